//! Memory pressure on a real memcached. Its `cache_memlimit` refuses anything under 8 MiB, and
//! lowering it frees no page a slab class already holds: it only stops new ones. So the limit
//! goes down to that floor and a ballast writer fills it, in the slab classes the node's own
//! items live in, and keeps writing: each filler past the limit evicts the item at the tail of
//! its class's LRU, so what nobody read lately (a tombstone, a cold entry) is evicted, as in a
//! production node whose memory other keys fill. The heal stops the writer and gives the node
//! back its boot limit ([`restore`], whatever became of the writer); the fillers expire on their
//! own. A node that stops reading (paused, cut off) stops the writer at its next write's
//! deadline, never the heal.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The lowest limit memcached's `cache_memlimit` accepts.
pub const FLOOR_MIB: u32 = 8;
/// The limit the cluster boots memcached with (`-m`).
pub const BOOT_MIB: u32 = crate::cluster::MEMCACHED_MIB;
/// How long one command or one batch of fillers may take before the node counts as not
/// reading; also how long the heal waits for the writer to stop.
const DEADLINE: Duration = Duration::from_secs(2);

/// The chunk size of the class a ~200-byte entry lands in, when the node holds nothing yet.
const CHUNK_BYTES_DEFAULT: usize = 240;
/// Fillers per write; several writes are in flight before the writer yields.
const BATCH: usize = 256;
/// How long a filler lives: past any fault, short of a long run's end.
const FILLER_TTL_S: u32 = 20;
/// An item's bytes beyond its value on a 64-bit build with CAS: the 48-byte header, the CAS,
/// the key's NUL and the value's CRLF; the filler key is 24 bytes; 4 bytes of slack keep the
/// item inside its class rather than on the edge.
const FILLER_OVERHEAD_BYTES: usize = 48 + 8 + 1 + 2 + 24 + 4;

pub struct Ballast {
    addr: String,
    stop: Arc<AtomicBool>,
    writer: JoinHandle<Result<u64, String>>,
}

impl Ballast {
    /// Lowers `addr`'s limit to `limit_mib` (at least [`FLOOR_MIB`]) and starts filling it.
    pub async fn start(addr: &str, limit_mib: u32) -> Result<Ballast, String> {
        let mut s = connect(addr).await?;
        set_limit(&mut s, limit_mib.max(FLOOR_MIB)).await?;
        let classes = used_classes(&ask(&mut s, "stats slabs\r\n", "END\r\n").await?);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(fill(s, classes, stop.clone()));
        Ok(Ballast {
            addr: addr.to_string(),
            stop,
            writer,
        })
    }

    /// Stops the writer: the fillers written, or why the writer stopped early. The limit is
    /// [`restore`]'s.
    pub async fn stop(mut self) -> Result<u64, String> {
        self.stop.store(true, Relaxed);
        match tokio::time::timeout(DEADLINE, &mut self.writer).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(_) => Err(format!(
                "the ballast writer to {} did not stop within {DEADLINE:?}",
                self.addr
            )),
        }
    }
}

impl Drop for Ballast {
    /// A ballast dropped without [`Ballast::stop`] (a run that ends early) stops writing too.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.writer.abort();
    }
}

/// Gives `addr` back its boot limit, [`BOOT_MIB`].
pub async fn restore(addr: &str) -> Result<(), String> {
    set_limit(&mut connect(addr).await?, BOOT_MIB).await
}

async fn set_limit(s: &mut TcpStream, mib: u32) -> Result<(), String> {
    let ok = ask(s, &format!("cache_memlimit {mib}\r\n"), "\r\n").await?;
    match ok.trim() {
        "OK" => Ok(()),
        other => Err(format!("cache_memlimit {mib}: {other}")),
    }
}

async fn connect(addr: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(DEADLINE, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("memcached {addr}: {e}")),
        Err(_) => Err(format!(
            "memcached {addr}: no connection within {DEADLINE:?}"
        )),
    }
}

/// Sends `cmd` and reads until the reply ends with `end`, within [`DEADLINE`].
async fn ask(s: &mut TcpStream, cmd: &str, end: &str) -> Result<String, String> {
    let exchange = async {
        s.write_all(cmd.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.ends_with(end.as_bytes()) {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("memcached closed the connection".to_string());
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(DEADLINE, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no reply to {:?} within {DEADLINE:?}", cmd.trim())),
    }
}

/// The chunk sizes of the slab classes holding items, from `stats slabs`, each with its
/// share of the items; one default class when the node holds nothing.
pub fn used_classes(stats_slabs: &str) -> Vec<(usize, u64)> {
    let mut classes: Vec<(u32, usize, u64)> = Vec::new();
    for line in stats_slabs.lines() {
        let Some(rest) = line.strip_prefix("STAT ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(' ') else {
            continue;
        };
        let Some((id, stat)) = name.split_once(':') else {
            continue;
        };
        let (Ok(id), Ok(v)) = (id.parse::<u32>(), value.trim().parse::<u64>()) else {
            continue;
        };
        let i = match classes.iter().position(|c| c.0 == id) {
            Some(i) => i,
            None => {
                classes.push((id, 0, 0));
                classes.len() - 1
            }
        };
        match stat {
            "chunk_size" => classes[i].1 = v as usize,
            "used_chunks" => classes[i].2 = v,
            _ => {}
        }
    }
    let used: Vec<(usize, u64)> = (classes.into_iter())
        .filter(|c| c.2 > 0 && c.1 > FILLER_OVERHEAD_BYTES)
        .map(|c| (c.1, c.2))
        .collect();
    if used.is_empty() {
        vec![(CHUNK_BYTES_DEFAULT, 1)]
    } else {
        used
    }
}

/// Writes fillers into `classes` (chunk size, share) until `stop`: the fillers written.
async fn fill(
    mut s: TcpStream,
    classes: Vec<(usize, u64)>,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let (mut rd, mut wr) = s.split();
    // Fillers are noreply; an error reply is read and dropped so the socket never stalls.
    let drain = async {
        let mut buf = [0u8; 4096];
        while rd.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    };
    let shares: u64 = classes.iter().map(|c| c.1).sum();
    let write = async {
        let mut n = 0u64;
        while !stop.load(Relaxed) {
            for &(chunk, share) in &classes {
                let value = vec![b'b'; chunk - FILLER_OVERHEAD_BYTES];
                let count = (BATCH as u64 * share).div_ceil(shares);
                let mut batch = Vec::with_capacity(count as usize * (chunk + 48));
                for _ in 0..count {
                    let head = format!(
                        "set aside:ballast:{n:010} 0 {FILLER_TTL_S} {} noreply\r\n",
                        value.len()
                    );
                    batch.extend_from_slice(head.as_bytes());
                    batch.extend_from_slice(&value);
                    batch.extend_from_slice(b"\r\n");
                    n += 1;
                }
                match tokio::time::timeout(DEADLINE, wr.write_all(&batch)).await {
                    Ok(r) => r.map_err(|e| e.to_string())?,
                    Err(_) => return Err(format!("the node read no filler for {DEADLINE:?}")),
                }
            }
            // A yield per batch: the app nodes share the cores with the writer.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(n)
    };
    tokio::select! {
        r = write => r,
        () = drain => Err("memcached closed the ballast connection".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ballast_writes_into_the_classes_that_hold_items() {
        let slabs = "STAT 5:chunk_size 240\r\nSTAT 5:used_chunks 30\r\nSTAT 6:chunk_size 304\r\n\
                     STAT 6:used_chunks 0\r\nSTAT 7:chunk_size 384\r\nSTAT 7:used_chunks 10\r\n\
                     STAT active_slabs 3\r\nSTAT total_malloced 3145728\r\nEND\r\n";
        assert_eq!(used_classes(slabs), vec![(240, 30), (384, 10)]);
        assert_eq!(used_classes("END\r\n"), vec![(CHUNK_BYTES_DEFAULT, 1)]);
        // Lines of other shapes, and a class too small for a filler, are passed over.
        let odd = "STAT 1:chunk_size 48\r\nSTAT 1:used_chunks 9\r\nSTAT 2:chunk_size x\r\n\
                   STAT total_malloced 1\r\nnoise\r\nEND\r\n";
        assert_eq!(used_classes(odd), vec![(CHUNK_BYTES_DEFAULT, 1)]);
    }

    #[test]
    fn the_boot_limit_is_the_models() {
        let boot = BOOT_MIB as usize * 1024 * 1024;
        assert_eq!(boot, aside::model::memcached::LIMIT_BYTES_BOOT);
    }
}
