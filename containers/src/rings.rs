//! A memcached ring change pushed to every app node in the library's two steps
//! ([`aside::Membership`]: staged on all, then committed on all), as a configuration service
//! would push it. App nodes in this process are changed through their handles; app nodes in
//! containers of their own follow a file in the run directory ([`follow`]) and acknowledge each
//! step in one of their own, which the host waits for before the next step.
//!
//! The file is `ring`: `SEQ STEP MEMBERS` (`STEP`: `stage` or `commit`; `MEMBERS`: host:port,
//! comma-separated). Each app node answers in `ring-ack-N`: `SEQ MEMBERS`, its ring after the
//! step.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aside::Membership;
use tokio::time::Instant;

/// How long the host waits for every app node to acknowledge a step.
const ACK_WAIT_MAX: Duration = Duration::from_secs(5);
/// How often an app node looks at the `ring` file.
const FOLLOW_EVERY: Duration = Duration::from_millis(5);

/// Every app node's ring, as the nemesis holds them.
pub enum Rings {
    /// The handles of the app nodes in this process.
    InProcess(Vec<Membership>),
    /// App nodes in containers, following `dir/ring`; `boot`: the ring each has until it
    /// acknowledges a step.
    Files {
        dir: PathBuf,
        apps: usize,
        seq: u64,
        boot: Vec<String>,
    },
}

impl Rings {
    /// Every app node's ring made of `members`: staged on all, then committed on all. An app
    /// node that does not acknowledge a step in time is logged; the fault's effect then never
    /// shows, which fails the run as a harness error.
    pub async fn set(&mut self, members: &[String]) {
        match self {
            Rings::InProcess(rings) => {
                for r in rings.iter() {
                    if let Err(e) = r.stage(members) {
                        tracing::warn!("ring change: {e}");
                    }
                }
                for r in rings.iter() {
                    let _ = r.commit();
                }
            }
            Rings::Files { dir, apps, seq, .. } => {
                for step in ["stage", "commit"] {
                    *seq += 1;
                    let text = format!("{seq} {step} {}", members.join(","));
                    if let Err(e) = write_atomic(&dir.join("ring"), &text) {
                        tracing::warn!("ring change: {e}");
                        return;
                    }
                    if let Err(e) = wait_acks(dir, *apps, *seq).await {
                        tracing::warn!("ring change: {e}");
                        return;
                    }
                }
            }
        }
    }

    /// Each app node's ring now (an app node in a container: as it last acknowledged, the boot
    /// ring before it has).
    pub fn current(&self) -> Vec<Vec<String>> {
        match self {
            Rings::InProcess(rings) => rings.iter().map(Membership::members).collect(),
            Rings::Files {
                dir, apps, boot, ..
            } => (0..*apps)
                .map(|app| read_ack(&ack_file(dir, app)).map_or_else(|| boot.clone(), |a| a.1))
                .collect(),
        }
    }
}

fn ack_file(dir: &Path, app: usize) -> PathBuf {
    dir.join(format!("ring-ack-{}", app + 1))
}

/// Writes `text` to `file` through a rename, so that a follower never reads half of it.
pub(crate) fn write_atomic(file: &Path, text: &str) -> Result<(), String> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, file))
        .map_err(|e| format!("writing {}: {e}", file.display()))
}

/// `SEQ MEMBERS` of an ack file.
fn read_ack(file: &Path) -> Option<(u64, Vec<String>)> {
    let text = std::fs::read_to_string(file).ok()?;
    let (seq, members) = text.trim().split_once(' ')?;
    Some((seq.parse().ok()?, split(members)))
}

fn split(members: &str) -> Vec<String> {
    members
        .split(',')
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect()
}

async fn wait_acks(dir: &Path, apps: usize, seq: u64) -> Result<(), String> {
    let deadline = Instant::now() + ACK_WAIT_MAX;
    loop {
        let behind: Vec<usize> = (0..apps)
            .filter(|&a| read_ack(&ack_file(dir, a)).is_none_or(|(s, _)| s < seq))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = behind.iter().map(|a| format!("app-{}", a + 1)).collect();
            return Err(format!(
                "{} did not apply ring step {seq} within {} s",
                names.join(", "),
                ACK_WAIT_MAX.as_secs()
            ));
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The app node's side: applies each step of `dir/ring` to `ring` and acknowledges it, until
/// the task is dropped.
pub async fn follow(dir: PathBuf, app: usize, ring: Membership) {
    let mut done = 0u64;
    loop {
        if let Some((seq, step, members)) = read_step(&dir.join("ring")).filter(|s| s.0 > done) {
            let applied = match step.as_str() {
                "stage" => ring.stage(&members),
                _ => ring.commit(),
            };
            if let Err(e) = applied {
                eprintln!("app-{}: ring step {seq}: {e}", app + 1);
            }
            done = seq;
            let ack = format!("{seq} {}", ring.members().join(","));
            if let Err(e) = write_atomic(&ack_file(&dir, app), &ack) {
                eprintln!("app-{}: {e}", app + 1);
            }
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

fn read_step(file: &Path) -> Option<(u64, String, Vec<String>)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut parts = text.trim().splitn(3, ' ');
    let seq = parts.next()?.parse().ok()?;
    let step = parts.next()?.to_string();
    Some((seq, step, split(parts.next().unwrap_or(""))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_app_node_following_the_file_stages_commits_and_acknowledges() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = aside::CacheConfig::default();
        let nodes = vec![(), (), ()];
        let pool = aside::Pool::new(
            aside::Ring::new(&["a:1", "b:1", "c:1"]).unwrap(),
            nodes,
            &cfg,
        )
        .with_spare("d:1", (), &cfg);
        let follower = tokio::spawn(follow(dir.path().to_path_buf(), 0, pool.membership()));
        let three: Vec<String> = ["a:1", "b:1", "c:1"].map(String::from).into();
        let mut rings = Rings::Files {
            dir: dir.path().to_path_buf(),
            apps: 1,
            seq: 0,
            boot: three.clone(),
        };
        assert_eq!(rings.current(), vec![three], "the boot ring until a step");
        let four: Vec<String> = ["a:1", "b:1", "c:1", "d:1"].map(String::from).into();
        rings.set(&four).await;
        assert_eq!(rings.current(), vec![four.clone()]);
        assert_eq!(pool.membership().members(), four);
        follower.abort();
    }
}
