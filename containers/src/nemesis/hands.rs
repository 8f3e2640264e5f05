//! The containers world's primitives ([`Hands`]): what `docker`, iptables, the proxies and the
//! servers' own commands do for each fault kind, and how the host looks for each effect.

use std::net::SocketAddr;
use std::time::Duration;

use chaos::fault::effect::{FLUSH_MARKER, LOSS_BURST};
use chaos::fault::hands::{Hands, Kept};
use chaos::fault::{Fault, Side, Target};

use super::iptables::cut_seen;
use super::probe::redis;
use super::{ask, DockerNemesis, PROBE_TIMEOUT};
use crate::docker::{docker, exec, psql};

impl Hands for DockerNemesis<'_> {
    /// The servers and app-node containers on `side`; with the app nodes in this process, those
    /// too: a `clock` fault reaches them through their handles, and every other kind finds no
    /// container for them ([`DockerNemesis::node`]) and does nothing to them.
    fn targets(&self, side: Side) -> Vec<Target> {
        let in_process = (0..self.clocks.in_process() as u8).map(Target::App);
        (self.side(side).into_iter().map(|(t, _)| t))
            .chain(in_process.filter(|t| side.contains(*t)))
            .collect()
    }

    fn kept(&mut self) -> &mut Kept {
        &mut self.kept
    }

    async fn kill(&mut self, t: Target) {
        let Some(n) = self.node(t) else { return };
        if let Err(e) = docker(&["kill", n.container.id()]).await {
            tracing::warn!("{e}");
        }
    }

    async fn restart(&mut self, t: Target) {
        let Some(n) = self.node(t) else { return };
        if let Err(e) = n.start().await {
            tracing::warn!("{e}");
        }
    }

    async fn pause(&mut self, t: Target) {
        let Some(n) = self.node(t) else { return };
        if let Err(e) = n.pause().await {
            tracing::warn!("{e}");
        }
    }

    async fn resume(&mut self, t: Target) {
        let Some(n) = self.node(t) else { return };
        if let Err(e) = n.unpause().await {
            tracing::warn!("{e}");
        }
    }

    /// Staged: added with every other rule due now ([`DockerNemesis::apply_staged`]).
    async fn cut(&mut self, fault: &Fault, peers: Side, one_way: bool) {
        self.stage_cut(*fault, peers, one_way);
    }

    async fn uncut(&mut self, fault: &Fault, _peers: Side, _one_way: bool) {
        self.drop_rules(&[*fault]).await;
    }

    /// Without proxies (app nodes in this process) nothing happens, and nothing is observed.
    async fn delay(&mut self, one_way_ms: Option<u32>) {
        if let Some(p) = self.proxies {
            if let Err(e) = p.latency(one_way_ms).await {
                tracing::warn!("{e}");
            }
        }
    }

    async fn drop_messages(&mut self, fault: &Fault, per_mille: Option<u16>) {
        match per_mille {
            Some(pm) => self.stage_loss(*fault, pm),
            None => self.drop_rules(&[*fault]).await,
        }
    }

    /// Staged like a loss: added with every other rule due now.
    async fn duplicate_messages(&mut self, fault: &Fault, per_mille: Option<u16>) {
        match per_mille {
            Some(pm) => self.stage_duplicate(*fault, pm),
            None => self.drop_rules(&[*fault]).await,
        }
    }

    /// Per container (every server, and every app node that has one), the D-SACKs its kernel
    /// received (`TCPDSACKRecv` of its network namespace): each a receiver's report of a
    /// segment it got twice. A container whose copying rules are in and have copied nothing yet
    /// is left out, so that D-SACKs of other causes (a segment resent after a lost ACK) never
    /// show a copy the fault did not make; so are containers that do not answer (killed,
    /// paused).
    async fn copies_absorbed(&mut self) -> (Vec<(Target, u64)>, String) {
        let script = "cat /proc/net/netstat; iptables -t mangle -L POSTROUTING -v -x -n";
        let reads = (self.side(Side::Network).into_iter()).map(|(t, n)| async move {
            let text = exec(n, &["sh", "-c", script]).await.ok()?;
            if tee_copied(&text) == Some(0) {
                return None;
            }
            Some((t, tcp_ext(&text, "TCPDSACKRecv")?))
        });
        let counts: Vec<(Target, u64)> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        let how = format!(
            "D-SACKs for segments received twice: TCPDSACKRecv in {} containers' network namespaces",
            counts.len()
        );
        (counts, how)
    }

    async fn mark(&mut self, t: Target) -> bool {
        let Some(n) = self.node(t) else { return false };
        match t {
            Target::Memcached(_) => {
                use aside::tier::MemcachedLike;
                let m = aside::backend::Memcached::new(n.addr(), 1);
                m.set(FLUSH_MARKER, b"1", 600).await.is_ok()
            }
            Target::RedisMaster(_) | Target::RedisReplica(_) => {
                redis(&n.addr(), &["SET", FLUSH_MARKER, "1"]).await.is_ok()
            }
            _ => false,
        }
    }

    async fn flush(&mut self, t: Target) {
        let Some(n) = self.node(t) else { return };
        let flushed = match t {
            Target::Memcached(_) => {
                use aside::tier::MemcachedLike;
                let m = aside::backend::Memcached::new(n.addr(), 1);
                m.flush_all().await.map_err(|e| e.to_string())
            }
            _ => redis(&n.addr(), &["FLUSHALL"]).await.map(drop),
        };
        if let Err(e) = flushed {
            tracing::warn!("flush {}: {e}", t.name());
        }
    }

    /// Redis: `maxmemory` with `allkeys-lru`. memcached: its floor and a ballast writer
    /// ([`super::ballast`]).
    async fn limit_memory(&mut self, t: Target, kib: Option<u32>) -> u32 {
        let Some(n) = self.node(t) else {
            return kib.unwrap_or(0);
        };
        if let Target::Memcached(_) = t {
            use super::ballast::{self, Ballast, BOOT_MIB, FLOOR_MIB};
            if let Some(i) = self.ballasts.iter().position(|b| b.0 == t) {
                let (_, b) = self.ballasts.swap_remove(i);
                match b.stop().await {
                    Ok(n) => tracing::debug!("{}: {n} ballast fillers written", t.name()),
                    Err(e) => tracing::warn!("memory limit on {}: {e}", t.name()),
                }
            }
            let Some(kib) = kib else {
                // Whatever became of the writer, or of the limit's start.
                if let Err(e) = ballast::restore(&n.addr()).await {
                    tracing::warn!("memory limit on {}: {e}", t.name());
                }
                return BOOT_MIB * 1024;
            };
            let mib = kib.div_ceil(1024).max(FLOOR_MIB);
            match Ballast::start(&n.addr(), mib).await {
                Ok(b) => self.ballasts.push((t, b)),
                Err(e) => tracing::warn!("memory limit on {}: {e}", t.name()),
            }
            return mib * 1024;
        }
        match kib {
            Some(kib) => {
                let bytes = (u64::from(kib) * 1024).to_string();
                let policy = ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"];
                let _ = redis(&n.addr(), &policy).await;
                let _ = redis(&n.addr(), &["CONFIG", "SET", "maxmemory", &bytes]).await;
            }
            None => {
                let _ = redis(&n.addr(), &["CONFIG", "SET", "maxmemory", "0"]).await;
            }
        }
        kib.unwrap_or(0)
    }

    /// The replica only (`recovery_min_apply_delay`); the heal goes back to the delay it booted
    /// with.
    async fn lag_replica(&mut self, t: Target, lag_ms: Option<u32>) {
        if t != Target::PgReplica {
            return;
        }
        let Some(n) = self.node(t) else { return };
        let ms = lag_ms.map_or(self.cluster.pg_apply_delay_ms, u64::from);
        if let Err(e) = Self::apply_delay(n, ms).await {
            tracing::warn!("replica lag: {e}");
        }
    }

    /// Through the proxy in front of `t` (a plan with slow queries runs the app nodes behind
    /// proxies); without proxies nothing happens, and nothing is observed.
    async fn slow_queries(&mut self, t: Target, query_ms: Option<u32>) {
        self.through_proxy(t, |p, addr| p.slow_replies(addr, query_ms));
    }

    /// Through `t`'s proxy: the app nodes' connections, and the host's probes through it
    /// (replication and the Sentinels do not pass the proxies); without proxies nothing
    /// happens, and nothing is observed.
    async fn reset_replies(&mut self, t: Target, on: bool) {
        self.through_proxy(t, |p, addr| p.reset_replies(addr, on));
    }

    async fn unreachable(&mut self, t: Target) -> Option<String> {
        let n = self.node(t)?;
        if let Target::App(_) = t {
            // Nobody talks to an app node: Docker's account of its cgroup says it.
            let state = docker(&["inspect", "-f", "{{.State.Status}}", n.container.id()])
                .await
                .ok()?;
            return (state == "paused" || state == "exited")
                .then(|| format!("{}'s container is {state} (docker inspect)", t.name()));
        }
        let addr: SocketAddr = n.addr().parse().ok()?;
        let e = ask(t, addr, PROBE_TIMEOUT).await.err()?;
        Some(format!("the host -> {} ({addr}): {e}", t.name()))
    }

    async fn cut_seen(&mut self, fault: &Fault, peers: Side) -> Option<String> {
        if self.is_apps(fault.target) || self.is_apps(peers) {
            // From the host (the apps) to a server on the other side.
            let other = if self.is_apps(fault.target) {
                peers
            } else {
                fault.target
            };
            let (t, n) = *self.side(other).first()?;
            let addr: SocketAddr = n.addr().parse().ok()?;
            let e = ask(t, addr, PROBE_TIMEOUT).await.err()?;
            return Some(format!("the apps -> {} ({addr}): {e}", t.name()));
        }
        cut_seen(self.cut_pair(fault, peers)?).await
    }

    /// From the host through the master's proxy, as an app node's round trip goes.
    async fn round_trip(&mut self) -> Option<(String, Duration)> {
        let (t, n) = *self.side(Side::One(Target::RedisMaster(0))).first()?;
        let (name, front) = self.proxies?.front_of(n.addr().parse().ok()?)?;
        let began = std::time::Instant::now();
        ask(t, front, Duration::from_secs(2)).await.ok()?;
        let path = format!("the host through the {name} proxy ({front})");
        Some((path, began.elapsed()))
    }

    async fn loss_burst(&mut self) -> Option<(String, usize, Duration)> {
        let (t, n) = *self.servers().first()?;
        let addr: SocketAddr = n.addr().parse().ok()?;
        let within = Duration::from_millis(300);
        let probes = (0..LOSS_BURST).map(|_| ask(t, addr, within));
        let lost = futures_util::future::join_all(probes)
            .await
            .iter()
            .filter(|r| r.is_err())
            .count();
        Some((format!("the host to {}", t.name()), lost, within))
    }

    async fn holds_marker(&mut self, t: Target) -> Option<bool> {
        let n = self.node(t)?;
        match t {
            Target::Memcached(_) => {
                use aside::tier::MemcachedLike;
                let m = aside::backend::Memcached::new(n.addr(), 1);
                m.gets(FLUSH_MARKER).await.ok().map(|v| v.is_some())
            }
            _ => redis(&n.addr(), &["GET", FLUSH_MARKER])
                .await
                .ok()
                .map(|v| !matches!(v, redis::Value::Nil)),
        }
    }

    async fn set_ring(&mut self, members: &[Target]) {
        let names: Vec<String> = (members.iter())
            .filter_map(|t| Some(self.node(*t)?.addr()))
            .collect();
        self.rings.set(&names).await;
    }

    async fn stall_requests(&mut self, t: Target, on: bool) {
        self.through_proxy(t, |p, addr| p.stall(addr, on));
    }

    /// The proxy's count of held chunks, after a hello the stall holds.
    async fn requests_held(&mut self, t: Target) -> Option<(u64, String)> {
        self.hello_then_count(
            t,
            crate::proxy::Proxies::held,
            "chunks clients sent waiting in",
        )
    }

    async fn half_open(&mut self, t: Target, on: bool) {
        self.through_proxy(t, |p, addr| p.half_open(addr, on));
    }

    /// The proxy's count of dropped chunks, after a hello the fault drops (the heal resets
    /// its connection).
    async fn requests_dropped(&mut self, t: Target) -> Option<(u64, String)> {
        self.hello_then_count(
            t,
            crate::proxy::Proxies::dropped,
            "chunks clients sent, dropped by",
        )
    }

    /// An app node's through its handle or its file ([`crate::clocks`]); a Redis server's through
    /// the image's clock shim, whose file `docker exec` writes (a rename: the shim never reads
    /// half a line) or removes.
    async fn skew_clock(&mut self, t: Target, skew: Option<(i32, u16)>) {
        if let Target::App(i) = t {
            if let Err(e) = self.clocks.skew(usize::from(i), skew) {
                tracing::warn!("clock of {}: {e}", t.name());
            }
            return;
        }
        let Some(n) = self.node(t) else { return };
        let file = crate::cluster::CLOCK_FILE;
        let script = match skew {
            Some((jump_ms, rate_permille)) => {
                let since_ms = aside::wall::true_now_ms();
                format!("echo '{jump_ms} {rate_permille} {since_ms}' > {file}.tmp && mv {file}.tmp {file}")
            }
            None => format!("rm -f {file}"),
        };
        if let Err(e) = crate::docker::exec(n, &["sh", "-c", &script]).await {
            tracing::warn!("clock of {}: {e}", t.name());
        }
    }

    /// An app node's as it reports it; a Redis server's as `TIME` answers, against the host's
    /// clock halfway through the request.
    async fn clock_offset(&mut self, t: Target) -> Option<(String, i64)> {
        if let Target::App(i) = t {
            let off = self.clocks.offset_ms(usize::from(i))?;
            return Some(("its own reading".into(), off));
        }
        let n = self.node(t)?;
        let asked_ms = aside::wall::true_now_ms() as i64;
        let redis::Value::Array(parts) = redis(&n.addr(), &["TIME"]).await.ok()? else {
            return None;
        };
        let field = |i: usize| -> Option<i64> {
            match parts.get(i)? {
                redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                _ => None,
            }
        };
        let server_ms = field(0)? * 1000 + field(1)? / 1000;
        let mid_ms = (asked_ms + aside::wall::true_now_ms() as i64) / 2;
        Some(("TIME".into(), server_ms - mid_ms))
    }

    async fn reads_served(&mut self, t: Target) -> Option<(u64, String)> {
        let n = self.node(t)?;
        let m = aside::backend::Memcached::new(n.addr(), 1);
        let gets = tokio::time::timeout(super::PROBE_TIMEOUT, m.stat("cmd_get"))
            .await
            .ok()?
            .ok()?;
        Some((gets, "stats cmd_get".into()))
    }

    async fn rings(&mut self) -> Vec<Vec<Target>> {
        let memcached = self.side(Side::Memcached);
        let target = |a: &String| {
            memcached
                .iter()
                .find(|(_, n)| n.addr() == *a)
                .map(|(t, _)| *t)
        };
        (self.rings.current().iter())
            .map(|r| r.iter().filter_map(target).collect())
            .collect()
    }

    async fn evicted(&mut self, t: Target) -> Option<(u64, String)> {
        if let Target::Memcached(_) = t {
            let m = aside::backend::Memcached::new(self.node(t)?.addr(), 1);
            let n = tokio::time::timeout(super::PROBE_TIMEOUT, m.stat("evictions"));
            let how = "stats evictions, at cache_memlimit's 8 MiB floor kept full by ballast";
            return Some((n.await.ok()?.ok()?, how.into()));
        }
        let n = Self::evicted_keys(self.node(t)?).await?;
        Some((n, "INFO evicted_keys".into()))
    }

    async fn query_time(&mut self, t: Target) -> Option<(String, Duration)> {
        let n = self.node(t)?;
        let (name, front) = self.proxies?.front_of(n.addr().parse().ok()?)?;
        let began = std::time::Instant::now();
        ask(t, front, Duration::from_secs(2)).await.ok()?;
        let path = format!("the host through the {name} proxy ({front})");
        Some((path, began.elapsed()))
    }

    async fn request_error(&mut self, t: Target) -> Option<(String, String)> {
        let n = self.node(t)?;
        let addr: SocketAddr = n.addr().parse().ok()?;
        // A proxy whose server refuses drops its client with the request unread, which the
        // kernel answers with a reset too: only a server that answers straight is judged.
        ask(t, addr, Duration::from_secs(2)).await.ok()?;
        let (name, front) = self.proxies?.front_of(addr)?;
        let path = format!("the host through the {name} proxy ({front})");
        ask(t, front, Duration::from_secs(2))
            .await
            .err()
            .map(|e| (path, e))
    }

    async fn replica_behind(&mut self, t: Target, _lag_ms: u32) -> Option<String> {
        if t != Target::PgReplica {
            return None;
        }
        let row = psql(
            self.node(t)?,
            "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn(), \
             COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, 0)",
        )
        .await
        .ok()?;
        let (behind, ms) = row.split_once('|')?;
        (behind == "t").then(|| {
            format!("pg-replica has received WAL it has not replayed; its last replayed transaction is {ms} ms old")
        })
    }
}

/// Packets the `TEE` rules of an `iptables -L -v -x -n` listing copied; `None` without such a
/// rule.
fn tee_copied(listing: &str) -> Option<u64> {
    let tee: Vec<u64> = (listing.lines())
        .filter(|l| l.split_whitespace().nth(2) == Some("TEE"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    (!tee.is_empty()).then(|| tee.iter().sum())
}

/// The `TcpExt` counter `name` of a `/proc/net/netstat` text (a line of names, then a line of
/// values).
fn tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tcp_ext_counter_is_read_by_its_name() {
        let text = "TcpExt: SyncookiesSent TCPDSACKRecv TCPDSACKOldSent\nTcpExt: 0 92 3\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(super::tcp_ext(text, "TCPDSACKRecv"), Some(92));
        assert_eq!(super::tcp_ext(text, "TCPDSACKOldSent"), Some(3));
        assert_eq!(super::tcp_ext(text, "Nope"), None);
        assert_eq!(
            super::tcp_ext("TcpExt: TCPDSACKRecv\n", "TCPDSACKRecv"),
            None
        );
    }

    #[test]
    fn the_packets_tee_rules_copied_are_summed() {
        let head = "Chain POSTROUTING (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target     prot opt in     out     source               destination\n";
        let rule = |pkts: u64, gw: &str| {
            format!("{pkts:>8}    12340 TEE        6    --  *      *       0.0.0.0/0            {gw}           statistic mode random probability 0.3 TEE gw:{gw}\n")
        };
        let two = format!("{head}{}{}", rule(204, "172.20.0.2"), rule(3, "172.20.0.1"));
        assert_eq!(super::tee_copied(&two), Some(207));
        assert_eq!(super::tee_copied(head), None);
        let idle = format!("{head}{}", rule(0, "172.20.0.2"));
        assert_eq!(super::tee_copied(&idle), Some(0));
    }
}
