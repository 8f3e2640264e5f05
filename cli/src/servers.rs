//! `aside servers`: the servers the quickstart needs, started locally from the project's offline
//! image (Redis with a replica and Sentinels, memcached, PostgreSQL with a replica), and the
//! `aside.toml` that points at them; they run until Ctrl-C (or SIGTERM), then are removed.

use std::path::PathBuf;
use std::process::ExitCode;

use containers::{Cluster, ClusterSpec};

#[derive(clap::Args)]
pub struct ServersArgs {
    /// Also write the settings to FILE (they are always printed)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The strategy the settings name
    #[arg(long, default_value = "durable")]
    strategy: String,
}

pub fn servers(args: ServersArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside servers: {e}");
        ExitCode::from(2)
    };
    if aside::Builtin::parse(&args.strategy).is_none() {
        return fail(format!(
            "unknown strategy {:?}: use naive, versioned or durable",
            args.strategy
        ));
    }
    if let Err(e) = crate::chaos_cmd::docker_ready() {
        return fail(e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start a runtime: {e}")),
    };
    rt.block_on(async {
        eprintln!("aside servers: starting Redis (master, replica, Sentinels), memcached and PostgreSQL (master, replica)");
        let cluster = match Cluster::start(ClusterSpec::default()).await {
            Ok(c) => c,
            Err(e) => return fail(e.to_string()),
        };
        let toml = cluster.addrs().toml(&args.strategy);
        if let Some(out) = &args.out {
            // Written whole, then renamed: a reader never sees half a file.
            let tmp = out.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, &toml).and_then(|()| std::fs::rename(&tmp, out)) {
                return fail(format!("cannot write {}: {e}", out.display()));
            }
        }
        print!("{toml}");
        eprintln!(
            "aside servers: up{}; Ctrl-C stops and removes them",
            args.out
                .as_ref()
                .map_or(String::new(), |o| format!(", settings in {}", o.display()))
        );
        wait_for_stop().await;
        drop(cluster);
        eprintln!("aside servers: stopped and removed");
        ExitCode::SUCCESS
    })
}

/// Ctrl-C, or SIGTERM (`kill`, a CI job ending).
async fn wait_for_stop() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
