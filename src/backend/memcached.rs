//! A memcached node over the text protocol, async, with a small connection pool.
//!
//! Why not the `memcache` crate here: it is blocking, its `add` discards NOT_STORED (so a
//! versioned strategy cannot tell whether it won), and it sends any key it is given, spaces and
//! CR/LF included. This client refuses any key that is not valid for the protocol before a byte
//! is written, so a key can never smuggle in a second command. (The `memcache` crate is still
//! used by the tests as an independent client to look at what the server holds.)

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

use crate::key::MEMCACHED_KEY_BYTES_MAX;
use crate::tier::{MemcachedLike, TierError, TierResult};

const TIER: &str = "memcached";

struct Conn {
    io: BufReader<TcpStream>,
}

/// One memcached server.
pub struct Memcached {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    slots: Semaphore,
    connect_timeout: Duration,
}

fn unavailable(addr: &str, e: impl std::fmt::Display) -> TierError {
    TierError::Unavailable {
        tier: TIER,
        detail: format!("{addr}: {e}"),
    }
}

fn refused(detail: impl Into<String>) -> TierError {
    TierError::Refused {
        tier: TIER,
        detail: detail.into(),
    }
}

/// Rejects keys the text protocol cannot carry safely.
pub fn check_key(key: &str) -> TierResult<()> {
    if key.is_empty()
        || key.len() > MEMCACHED_KEY_BYTES_MAX
        || !key.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(refused(format!("key {key:?} is not a valid memcached key (1-250 printable bytes, no spaces): encode it with Key::memcached")));
    }
    Ok(())
}

enum Store {
    Set,
    Add,
    Cas(u64),
}

impl Memcached {
    /// `addr` is host:port. Connections are opened lazily, at most `conns_max` at once.
    pub fn new(addr: impl Into<String>, conns_max: usize) -> Self {
        Memcached {
            addr: addr.into(),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(conns_max.max(1)),
            connect_timeout: Duration::from_secs(2),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs one request/response exchange on a pooled connection. A connection that saw any
    /// error is dropped, never reused mid-response.
    async fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut BufReader<TcpStream>) -> TierResult<T>,
    ) -> TierResult<T> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| unavailable(&self.addr, e))?;
        let conn = self.idle.lock().await.pop();
        let mut conn = match conn {
            Some(c) => c,
            None => {
                let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
                    .await
                    .map_err(|_| unavailable(&self.addr, "connect timed out"))?
                    .map_err(|e| unavailable(&self.addr, e))?;
                let _ = s.set_nodelay(true);
                Conn {
                    io: BufReader::new(s),
                }
            }
        };
        let r = f(&mut conn.io).await;
        if r.is_ok() {
            self.idle.lock().await.push(conn);
        }
        r
    }

    async fn line(io: &mut BufReader<TcpStream>, addr: &str) -> TierResult<String> {
        let mut l = String::new();
        let n = io
            .read_line(&mut l)
            .await
            .map_err(|e| unavailable(addr, e))?;
        if n == 0 {
            return Err(unavailable(addr, "connection closed"));
        }
        if l.starts_with("SERVER_ERROR") || l.starts_with("CLIENT_ERROR") || l == "ERROR\r\n" {
            return Err(refused(l.trim_end().to_string()));
        }
        Ok(l)
    }

    async fn store(&self, cmd: Store, key: &str, value: &[u8], ttl_s: u32) -> TierResult<bool> {
        check_key(key)?;
        let head = match cmd {
            Store::Set => format!("set {key} 0 {ttl_s} {}\r\n", value.len()),
            Store::Add => format!("add {key} 0 {ttl_s} {}\r\n", value.len()),
            Store::Cas(c) => format!("cas {key} 0 {ttl_s} {} {c}\r\n", value.len()),
        };
        let addr = self.addr.clone();
        self.with(async move |io| {
            let mut msg = Vec::with_capacity(head.len() + value.len() + 2);
            msg.extend_from_slice(head.as_bytes());
            msg.extend_from_slice(value);
            msg.extend_from_slice(b"\r\n");
            io.get_mut()
                .write_all(&msg)
                .await
                .map_err(|e| unavailable(&addr, e))?;
            match Self::line(io, &addr).await?.as_str() {
                "STORED\r\n" => Ok(true),
                "NOT_STORED\r\n" | "EXISTS\r\n" | "NOT_FOUND\r\n" => Ok(false),
                other => Err(refused(format!("unexpected reply {:?}", other.trim_end()))),
            }
        })
        .await
    }

    /// `mn` (meta no-op): a cheap health check that needs memcached >= 1.6.
    pub async fn ping(&self) -> TierResult<()> {
        let addr = self.addr.clone();
        self.with(async move |io| {
            io.get_mut()
                .write_all(b"mn\r\n")
                .await
                .map_err(|e| unavailable(&addr, e))?;
            match Self::line(io, &addr).await?.as_str() {
                "MN\r\n" => Ok(()),
                other => Err(refused(format!("unexpected reply {:?}", other.trim_end()))),
            }
        })
        .await
    }
}

impl MemcachedLike for Memcached {
    async fn gets(&self, key: &str) -> TierResult<Option<(Vec<u8>, u64)>> {
        check_key(key)?;
        let addr = self.addr.clone();
        let req = format!("gets {key}\r\n");
        self.with(async move |io| {
            io.get_mut()
                .write_all(req.as_bytes())
                .await
                .map_err(|e| unavailable(&addr, e))?;
            let head = Self::line(io, &addr).await?;
            if head == "END\r\n" {
                return Ok(None);
            }
            // VALUE <key> <flags> <bytes> <cas>
            let parts: Vec<&str> = head.trim_end().split(' ').collect();
            let (Some(&"VALUE"), Some(len), Some(cas)) =
                (parts.first(), parts.get(3), parts.get(4))
            else {
                return Err(refused(format!("unexpected reply {:?}", head.trim_end())));
            };
            let len: usize = len
                .parse()
                .map_err(|_| refused(format!("bad length in {head:?}")))?;
            let cas: u64 = cas
                .parse()
                .map_err(|_| refused(format!("bad cas in {head:?}")))?;
            let mut data = vec![0u8; len + 2];
            io.read_exact(&mut data)
                .await
                .map_err(|e| unavailable(&addr, e))?;
            data.truncate(len);
            let end = Self::line(io, &addr).await?;
            if end != "END\r\n" {
                return Err(refused(format!("expected END, got {:?}", end.trim_end())));
            }
            Ok(Some((data, cas)))
        })
        .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<()> {
        match self.store(Store::Set, key, value, ttl_s).await? {
            true => Ok(()),
            false => Err(refused("set was not stored")),
        }
    }

    async fn add(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<bool> {
        self.store(Store::Add, key, value, ttl_s).await
    }

    async fn cas(&self, key: &str, value: &[u8], ttl_s: u32, cas: u64) -> TierResult<bool> {
        self.store(Store::Cas(cas), key, value, ttl_s).await
    }

    async fn delete(&self, key: &str) -> TierResult<bool> {
        check_key(key)?;
        let addr = self.addr.clone();
        let req = format!("delete {key}\r\n");
        self.with(async move |io| {
            io.get_mut()
                .write_all(req.as_bytes())
                .await
                .map_err(|e| unavailable(&addr, e))?;
            match Self::line(io, &addr).await?.as_str() {
                "DELETED\r\n" => Ok(true),
                "NOT_FOUND\r\n" => Ok(false),
                other => Err(refused(format!("unexpected reply {:?}", other.trim_end()))),
            }
        })
        .await
    }

    async fn flush_all(&self) -> TierResult<()> {
        let addr = self.addr.clone();
        self.with(async move |io| {
            io.get_mut()
                .write_all(b"flush_all\r\n")
                .await
                .map_err(|e| unavailable(&addr, e))?;
            match Self::line(io, &addr).await?.as_str() {
                "OK\r\n" => Ok(()),
                other => Err(refused(format!("unexpected reply {:?}", other.trim_end()))),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_inject_are_refused_before_sending() {
        for k in ["a\r\nflush_all", "two words", "", "é", &"x".repeat(251)] {
            assert!(
                matches!(check_key(k), Err(TierError::Refused { .. })),
                "{k:?}"
            );
        }
        assert!(check_key("posts:v3:r/programming:hot").is_ok());
    }
}
