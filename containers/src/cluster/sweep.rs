//! Containers this project left behind: counted by label, and removed when their runner is gone.

use std::process::Command;

use tracing::info;

/// Containers (running or not) labelled with `run_id`.
pub fn containers_of(run_id: &str) -> usize {
    count_labelled(&format!("label=aside.run={run_id}"))
}

/// Containers (running or not) of any run of this project.
pub fn all_containers() -> usize {
    count_labelled("label=aside.run")
}

/// Containers (running or not) that `docker ps --filter FILTER` lists; 0 when Docker does not
/// answer.
fn count_labelled(filter: &str) -> usize {
    Command::new("docker")
        .args(["ps", "-aq", "--filter", filter])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Removes the containers and networks of clusters whose process is gone: a runner killed with
/// SIGKILL (or the machine's OOM killer) never drops its cluster, so every new cluster sweeps
/// what such runs left. A process id reused since is left alone (its owner looks alive).
/// Returns how many containers were removed.
pub fn sweep_orphans() -> usize {
    let listed = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=aside.pid",
            "--format",
            "{{.ID}} {{.Label \"aside.pid\"}} {{.Label \"aside.run\"}}",
        ])
        .output();
    let Ok(listed) = listed else {
        return 0;
    };
    let mut removed = 0;
    let mut networks = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(id), Some(pid), Some(run)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let rm = Command::new("docker").args(["rm", "-f", id]).output();
        if rm.is_ok_and(|o| o.status.success()) {
            removed += 1;
            networks.insert(run.to_string());
        }
    }
    for n in networks {
        let _ = Command::new("docker").args(["network", "rm", &n]).output();
    }
    if removed > 0 {
        info!(
            removed,
            "swept the containers of runs whose process is gone"
        );
    }
    removed
}
