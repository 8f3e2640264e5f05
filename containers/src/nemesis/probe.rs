//! How the nemesis looks at a server from the host: a protocol-level hello, a Redis command.

use std::net::SocketAddr;
use std::time::Duration;

use chaos::fault::Target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PROBE_TIMEOUT;

/// A request and the test its answer must pass.
type Hello = (&'static [u8], fn(&[u8]) -> bool);

/// A protocol-level hello to `addr` from the host: Redis and Sentinel answer PING, memcached
/// `version`, PostgreSQL an SSLRequest with one byte. `Err(what was seen)` without an answer.
pub async fn ask(target: Target, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let (req, ok): Hello = match target {
        Target::RedisMaster(_) | Target::RedisReplica(_) | Target::Sentinel(_) => {
            (b"PING\r\n", |r| r.starts_with(b"+PONG"))
        }
        Target::Memcached(_) => (b"version\r\n", |r| r.starts_with(b"VERSION")),
        Target::PgPrimary | Target::PgReplica => (&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], |r| {
            matches!(r.first(), Some(b'N' | b'S'))
        }),
        Target::App(_) => return Ok(()),
    };
    let talk = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(req).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if ok(&buf[..n]) {
            Ok(())
        } else {
            Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&buf[..n])
            ))
        }
    };
    match tokio::time::timeout(timeout, talk).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Sends `cmd` (a Redis command in RESP) to `addr` and returns the raw reply.
pub(super) async fn redis(addr: &str, cmd: &[&str]) -> Result<redis::Value, String> {
    let client = redis::Client::open(format!("redis://{addr}")).map_err(|e| e.to_string())?;
    let mut c = tokio::time::timeout(PROBE_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| {
            format!(
                "{addr}: no connection within {} ms",
                PROBE_TIMEOUT.as_millis()
            )
        })?
        .map_err(|e| e.to_string())?;
    let mut q = redis::cmd(cmd[0]);
    for a in &cmd[1..] {
        q.arg(*a);
    }
    tokio::time::timeout(PROBE_TIMEOUT, q.query_async(&mut c))
        .await
        .map_err(|_| format!("{addr}: no reply within {} ms", PROBE_TIMEOUT.as_millis()))?
        .map_err(|e| e.to_string())
}
