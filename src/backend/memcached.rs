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
        return Err(refused(format!(
            "key {key:?} is not a valid memcached key (1-250 printable bytes, no spaces): encode it with Key::memcached"
        )));
    }
    Ok(())
}

/// What a request's reply is.
#[derive(Clone, Copy)]
enum Expect {
    /// STORED / NOT_STORED / EXISTS / NOT_FOUND
    Stored,
    /// VALUE ... END, or END
    Value,
    /// DELETED / NOT_FOUND
    Deleted,
    /// OK (flush_all)
    Ok,
    /// MN (meta no-op)
    Mn,
    /// STAT <name> <value> lines, then END
    Stats,
}

enum Reply {
    Stored(bool),
    Value(Option<(Vec<u8>, u64)>),
    Deleted(bool),
    Done,
    Stats(Vec<(String, String)>),
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

fn unexpected(l: &str) -> TierError {
    refused(format!("unexpected reply {:?}", l.trim_end()))
}

/// Writes one request and reads its whole reply.
async fn exchange(
    io: &mut BufReader<TcpStream>,
    addr: &str,
    req: &[u8],
    expect: Expect,
) -> TierResult<Reply> {
    io.get_mut()
        .write_all(req)
        .await
        .map_err(|e| unavailable(addr, e))?;
    let head = line(io, addr).await?;
    match expect {
        Expect::Stored => match head.as_str() {
            "STORED\r\n" => Ok(Reply::Stored(true)),
            "NOT_STORED\r\n" | "EXISTS\r\n" | "NOT_FOUND\r\n" => Ok(Reply::Stored(false)),
            other => Err(unexpected(other)),
        },
        Expect::Deleted => match head.as_str() {
            "DELETED\r\n" => Ok(Reply::Deleted(true)),
            "NOT_FOUND\r\n" => Ok(Reply::Deleted(false)),
            other => Err(unexpected(other)),
        },
        Expect::Ok if head == "OK\r\n" => Ok(Reply::Done),
        Expect::Mn if head == "MN\r\n" => Ok(Reply::Done),
        Expect::Ok | Expect::Mn => Err(unexpected(&head)),
        Expect::Stats => {
            let mut stats = Vec::new();
            let mut l = head;
            while l != "END\r\n" {
                let mut parts = l.trim_end().splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("STAT"), Some(name), Some(value)) => {
                        stats.push((name.to_string(), value.to_string()))
                    }
                    _ => return Err(unexpected(&l)),
                }
                l = line(io, addr).await?;
            }
            Ok(Reply::Stats(stats))
        }
        Expect::Value => {
            if head == "END\r\n" {
                return Ok(Reply::Value(None));
            }
            // VALUE <key> <flags> <bytes> <cas>
            let parts: Vec<&str> = head.trim_end().split(' ').collect();
            let (Some(&"VALUE"), Some(len), Some(cas)) =
                (parts.first(), parts.get(3), parts.get(4))
            else {
                return Err(unexpected(&head));
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
                .map_err(|e| unavailable(addr, e))?;
            data.truncate(len);
            let end = line(io, addr).await?;
            if end != "END\r\n" {
                return Err(refused(format!("expected END, got {:?}", end.trim_end())));
            }
            Ok(Reply::Value(Some((data, cas))))
        }
    }
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

    async fn connect(&self) -> TierResult<Conn> {
        let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| unavailable(&self.addr, "connect timed out"))?
            .map_err(|e| unavailable(&self.addr, e))?;
        let _ = s.set_nodelay(true);
        Ok(Conn {
            io: BufReader::new(s),
        })
    }

    /// One request on a pooled connection. A connection that saw any error (or whose caller was
    /// cancelled mid-reply) is dropped, never reused. A pooled connection can be dead without
    /// anyone knowing (the server restarted since it was last used): one retry on a fresh
    /// connection, safe for every command here (a repeated cas or add fails, it does nothing
    /// twice).
    async fn request(&self, req: &[u8], expect: Expect) -> TierResult<Reply> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| unavailable(&self.addr, e))?;
        let pooled = self.idle.lock().await.pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut r = exchange(&mut conn.io, &self.addr, req, expect).await;
        if reused && matches!(r, Err(TierError::Unavailable { .. })) {
            conn = self.connect().await?;
            r = exchange(&mut conn.io, &self.addr, req, expect).await;
        }
        if r.is_ok() {
            self.idle.lock().await.push(conn);
        }
        r
    }

    async fn store(
        &self,
        cmd: &str,
        key: &str,
        value: &[u8],
        ttl_s: u32,
        cas: Option<u64>,
    ) -> TierResult<bool> {
        check_key(key)?;
        let cas = cas.map_or(String::new(), |c| format!(" {c}"));
        let mut req = format!("{cmd} {key} 0 {ttl_s} {}{cas}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        match self.request(&req, Expect::Stored).await? {
            Reply::Stored(b) => Ok(b),
            _ => Err(refused("reply of the wrong kind")),
        }
    }

    /// The general statistic `name` of `stats` (`cmd_get`, `evictions`, `curr_items`, ...).
    pub async fn stat(&self, name: &str) -> TierResult<u64> {
        let Reply::Stats(stats) = self.request(b"stats\r\n", Expect::Stats).await? else {
            return Err(refused("reply of the wrong kind"));
        };
        let (_, value) = (stats.iter().find(|(n, _)| n == name))
            .ok_or_else(|| refused(format!("stats has no {name}")))?;
        value
            .parse()
            .map_err(|_| refused(format!("stats {name} is {value:?}, not a count")))
    }

    /// `mn` (meta no-op): a cheap health check that needs memcached >= 1.6.
    pub async fn ping(&self) -> TierResult<()> {
        self.request(b"mn\r\n", Expect::Mn).await.map(drop)
    }
}

impl MemcachedLike for Memcached {
    async fn gets(&self, key: &str) -> TierResult<Option<(Vec<u8>, u64)>> {
        check_key(key)?;
        match self
            .request(format!("gets {key}\r\n").as_bytes(), Expect::Value)
            .await?
        {
            Reply::Value(v) => Ok(v),
            _ => Err(refused("reply of the wrong kind")),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<()> {
        match self.store("set", key, value, ttl_s, None).await? {
            true => Ok(()),
            false => Err(refused("set was not stored")),
        }
    }

    async fn add(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<bool> {
        self.store("add", key, value, ttl_s, None).await
    }

    async fn cas(&self, key: &str, value: &[u8], ttl_s: u32, cas: u64) -> TierResult<bool> {
        self.store("cas", key, value, ttl_s, Some(cas)).await
    }

    async fn delete(&self, key: &str) -> TierResult<bool> {
        check_key(key)?;
        match self
            .request(format!("delete {key}\r\n").as_bytes(), Expect::Deleted)
            .await?
        {
            Reply::Deleted(b) => Ok(b),
            _ => Err(refused("reply of the wrong kind")),
        }
    }

    async fn flush_all(&self) -> TierResult<()> {
        self.request(b"flush_all\r\n", Expect::Ok).await.map(drop)
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
