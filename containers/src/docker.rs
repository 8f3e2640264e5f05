//! Docker, and programs inside a container, called without blocking the runtime: the nemesis
//! acts while the clients run on the same two worker threads, and a blocking `docker exec`
//! (about 90 ms) would stall them and show up as cache latency.

use tokio::process::Command;

use crate::cluster::Node;

/// `docker` with `args`: Ok(stdout) or Err(one line).
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let o = Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Runs `cmd` as root inside `node`'s container.
pub async fn exec(node: &Node, cmd: &[&str]) -> Result<String, String> {
    let id = node.container.id().to_string();
    let mut args = vec!["exec", "-u", "root", id.as_str()];
    args.extend_from_slice(cmd);
    docker(&args).await
}

/// `psql` inside `node`'s container, over TCP (the socket directory is not guaranteed).
pub async fn psql(node: &Node, sql: &str) -> Result<String, String> {
    exec(
        node,
        &["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atqc", sql],
    )
    .await
}
