//! The simulator's hands: each [`Hands`] primitive a fault kind acts and looks through, on madsim
//! nodes and the models they run.

use super::*;

/// How long a ring change stays staged on every app node before the first commits.
const RING_STAGED_MS: u64 = 20;
/// Between one app node's commit of a ring change and the next's.
const RING_COMMIT_SKEW_MS: u64 = 10;

impl Hands for SimNemesis {
    fn targets(&self, side: Side) -> Vec<Target> {
        self.side(side).into_iter().map(|n| n.target).collect()
    }

    fn kept(&mut self) -> &mut Kept {
        &mut self.kept
    }

    async fn kill(&mut self, t: Target) {
        if let Some(n) = self.placed(t) {
            self.handle.kill(n.node.id());
        }
    }

    async fn restart(&mut self, t: Target) {
        if let Some(n) = self.placed(t) {
            self.handle.restart(n.node.id());
        }
    }

    async fn pause(&mut self, t: Target) {
        if let Some(n) = self.placed(t) {
            self.handle.pause(n.node.id());
        }
    }

    async fn resume(&mut self, t: Target) {
        if let Some(n) = self.placed(t) {
            self.handle.resume(n.node.id());
        }
    }

    async fn cut(&mut self, fault: &Fault, peers: Side, one_way: bool) {
        let net = NetSim::current();
        for (from, to) in self.links(fault, peers, one_way) {
            net.clog_link(from, to);
        }
    }

    async fn uncut(&mut self, fault: &Fault, peers: Side, one_way: bool) {
        let net = NetSim::current();
        for (from, to) in self.links(fault, peers, one_way) {
            net.unclog_link(from, to);
        }
    }

    async fn delay(&mut self, one_way_ms: Option<u32>) {
        match one_way_ms {
            Some(ms) => {
                let extra = Duration::from_millis(u64::from(ms));
                self.reconfigure(|c| {
                    c.send_latency = c.send_latency.start + extra..c.send_latency.end + extra
                });
            }
            None => self.restore(),
        }
    }

    async fn drop_messages(&mut self, _fault: &Fault, per_mille: Option<u16>) {
        match per_mille {
            Some(pm) => self.reconfigure(|c| c.packet_loss_rate = f64::from(pm) / 1000.0),
            None => self.restore(),
        }
    }

    async fn duplicate_messages(&mut self, _fault: &Fault, per_mille: Option<u16>) {
        crate::net::duplicate_requests(per_mille.unwrap_or(0));
    }

    /// Per server, the copied requests it absorbed. While the fault is on, a look first waits
    /// out the lateness of the copies sent just before it (the nemesis's burst's).
    async fn copies_absorbed(&mut self) -> (Vec<(Target, u64)>, String) {
        if crate::net::duplicating_per_mille() > 0 {
            let late_ms = chaos::fault::duplicate::LATE_MS + PROBE_TIMEOUT.as_millis() as u64;
            madsim::time::sleep(Duration::from_millis(late_ms)).await;
        }
        let counts = (self.nodes.iter())
            .filter_map(|n| Some((n.target, crate::net::copies_absorbed(n.addr?))))
            .collect();
        (
            counts,
            "copied requests the servers took again and answered from memory, or dropped as \
             too old, and did not run twice"
                .into(),
        )
    }

    async fn mark(&mut self, t: Target) -> bool {
        match self.placed(t) {
            Some(n) => self.mark_on(&n).await,
            None => false,
        }
    }

    async fn flush(&mut self, t: Target) {
        if let Some(n) = self.placed(t) {
            self.flush_on(&n).await;
        }
    }

    async fn limit_memory(&mut self, t: Target, kib: Option<u32>) -> u32 {
        let Some(r) = self.placed(t) else {
            return kib.unwrap_or(0);
        };
        let bytes = kib.map(|k| k as usize * 1024);
        if let Target::Memcached(_) = t {
            let limit = bytes.unwrap_or(mc::LIMIT_BYTES_BOOT);
            let set = || mc::Cmd::MemLimit { bytes: limit };
            let _: Option<mc::Reply> = match kib {
                Some(_) => self.tell(&r, TAG_MEMCACHED, set()).await,
                None => self.tell_until_heard(&r, TAG_MEMCACHED, set).await,
            };
            return (limit / 1024) as u32;
        }
        let _: Option<AdminReply> = match bytes {
            Some(b) => self.tell(&r, TAG_REDIS, Admin::MaxMemory(b)).await,
            None => {
                self.tell_until_heard(&r, TAG_REDIS, || Admin::MaxMemory(0))
                    .await
            }
        };
        kib.unwrap_or(0)
    }

    async fn lag_replica(&mut self, t: Target, lag_ms: Option<u32>) {
        let Some(pg) = self.placed(t) else { return };
        match lag_ms {
            Some(ms) => {
                let set = PgCmd::SetLag(Some(u64::from(ms)));
                let _: Option<PgReply> = self.tell(&pg, TAG_PG, set).await;
            }
            None => {
                let _: Option<PgReply> = self
                    .tell_until_heard(&pg, TAG_PG, || PgCmd::SetLag(None))
                    .await;
            }
        }
    }

    async fn slow_queries(&mut self, t: Target, query_ms: Option<u32>) {
        let Some(pg) = self.placed(t) else { return };
        let set = move || PgCmd::SetSlow(query_ms.map(u64::from));
        match query_ms {
            Some(_) => drop(self.tell::<_, PgReply>(&pg, TAG_PG, set()).await),
            None => drop(self.tell_until_heard::<_, PgReply>(&pg, TAG_PG, set).await),
        }
    }

    /// Straight into each app node's cache, as a configuration push would: staged on all, then
    /// (after [`RING_STAGED_MS`]) committed on each in turn, [`RING_COMMIT_SKEW_MS`] apart, so
    /// runs have app nodes reading from both rings at once.
    async fn set_ring(&mut self, members: &[Target]) {
        let names: Vec<String> = (members.iter())
            .filter_map(|t| Some(self.placed(*t)?.addr?.to_string()))
            .collect();
        for r in &self.rings {
            if let Err(e) = r.stage(&names) {
                eprintln!("ring change: {e}");
            }
        }
        madsim::time::sleep(Duration::from_millis(RING_STAGED_MS)).await;
        for (i, r) in self.rings.iter().enumerate() {
            if i > 0 {
                madsim::time::sleep(Duration::from_millis(RING_COMMIT_SKEW_MS)).await;
            }
            let _ = r.commit();
        }
    }

    /// The cluster's servers keep their answers (replication, the Sentinels' pings and
    /// failover commands), and so does the foreign writer (against real servers it does not
    /// pass the proxies); every other node, app or nemesis, gets resets.
    async fn reset_replies(&mut self, t: Target, on: bool) {
        let Some(addr) = self.placed(t).and_then(|n| n.addr) else {
            return;
        };
        crate::net::reset_replies(addr, on.then(|| self.servers_spared()));
    }

    async fn unreachable(&mut self, t: Target) -> Option<String> {
        let n = self.placed(t)?;
        if n.addr.is_some() {
            self.answers(&n, None).await.err()
        } else {
            self.runs(&n).await.err()
        }
    }

    async fn cut_seen(&mut self, fault: &Fault, peers: Side) -> Option<String> {
        let targets = self.side(fault.target);
        let peers: Vec<Placed> = self
            .side(peers)
            .into_iter()
            .filter(|p| !fault.target.contains(p.target))
            .collect();
        // A request from one side to a server on the other.
        let (from, to) = match peers.iter().find(|p| p.addr.is_some()) {
            Some(server) => (targets.first()?, server),
            None => (peers.first()?, targets.iter().find(|t| t.addr.is_some())?),
        };
        self.answers(to, Some(from)).await.err()
    }

    async fn round_trip(&mut self) -> Option<(String, Duration)> {
        let server = self.nodes.iter().find(|n| n.addr.is_some())?.clone();
        let (rpc, addr) = (self.rpc.clone(), server.addr?);
        let rtt = self
            .node
            .spawn(async move {
                let t = madsim::time::Instant::now();
                let _ = rpc
                    .call::<Admin, AdminReply>(addr, TAG_REDIS, Admin::Ping, Duration::from_secs(1))
                    .await;
                t.elapsed()
            })
            .await
            .ok()?;
        Some((format!("the nemesis to {}", server.target.name()), rtt))
    }

    async fn loss_burst(&mut self) -> Option<(String, usize, Duration)> {
        let server = self.nodes.iter().find(|n| n.addr.is_some())?.clone();
        let (rpc, addr) = (self.rpc.clone(), server.addr?);
        let lost = self
            .node
            .spawn(async move {
                let probes: Vec<_> = (0..LOSS_BURST)
                    .map(|_| {
                        let rpc = rpc.clone();
                        madsim::task::spawn(async move { ask(&rpc, server.target, addr).await })
                    })
                    .collect();
                let mut lost = 0;
                for p in probes {
                    lost += usize::from(!matches!(p.await, Ok(Ok(()))));
                }
                lost
            })
            .await
            .ok()?;
        Some((
            format!("the nemesis to {}", server.target.name()),
            lost,
            PROBE_TIMEOUT,
        ))
    }

    async fn holds_marker(&mut self, t: Target) -> Option<bool> {
        let n = self.placed(t)?;
        self.marker_on(&n).await
    }

    async fn reads_served(&mut self, t: Target) -> Option<(u64, String)> {
        let n = self.placed(t)?;
        match self.tell(&n, TAG_MEMCACHED, mc::Cmd::Stats).await? {
            mc::Reply::Stats { cmd_get, .. } => Some((cmd_get, "stats cmd_get".into())),
            _ => None,
        }
    }

    async fn rings(&mut self) -> Vec<Vec<Target>> {
        let by_addr = |a: &String| {
            (self.nodes.iter())
                .find(|n| n.addr.is_some_and(|x| x.to_string() == *a))
                .map(|n| n.target)
        };
        (self.rings.iter())
            .map(|r| r.members().iter().filter_map(by_addr).collect())
            .collect()
    }

    async fn evicted(&mut self, t: Target) -> Option<(u64, String)> {
        let r = self.placed(t)?;
        if let Target::Memcached(_) = t {
            return match self.tell(&r, TAG_MEMCACHED, mc::Cmd::Stats).await? {
                mc::Reply::Stats { evictions, .. } => Some((evictions, "stats evictions".into())),
                _ => None,
            };
        }
        let (evicted, used) = self.evicted_on(&r).await?;
        Some((evicted, format!("{:.1} KiB in use", used as f64 / 1024.0)))
    }

    async fn query_time(&mut self, t: Target) -> Option<(String, Duration)> {
        let pg = self.placed(t)?;
        let began = madsim::time::Instant::now();
        let read = PgCmd::Read("aside:nemesis:probe".into());
        let _: PgReply = self.tell(&pg, TAG_PG, read).await?;
        Some((format!("the nemesis to {}", t.name()), began.elapsed()))
    }

    /// Spared as for a reset: the cluster's servers and the foreign writer.
    async fn stall_requests(&mut self, t: Target, on: bool) {
        let Some(addr) = self.placed(t).and_then(|n| n.addr) else {
            return;
        };
        let spared = on.then(|| self.servers_spared());
        crate::net::stall_requests(addr, spared);
    }

    async fn requests_held(&mut self, t: Target) -> Option<(u64, String)> {
        self.ask_then_count(
            t,
            crate::net::held_at,
            "requests taken and not yet run, as the server counts them",
        )
    }

    /// Spared as for a reset: the cluster's servers and the foreign writer.
    async fn half_open(&mut self, t: Target, on: bool) {
        let Some(addr) = self.placed(t).and_then(|n| n.addr) else {
            return;
        };
        crate::net::half_open(addr, on.then(|| self.servers_spared()));
    }

    async fn requests_dropped(&mut self, t: Target) -> Option<(u64, String)> {
        self.ask_then_count(
            t,
            crate::net::dropped_at,
            "client requests dropped unanswered, as the server counts them",
        )
    }

    async fn skew_clock(&mut self, t: Target, skew: Option<(i32, u16)>) {
        if let Target::App(i) = t {
            if let Some(c) = self.clocks.get(usize::from(i)) {
                match skew {
                    Some((jump_ms, rate_permille)) => {
                        c.skew(i64::from(jump_ms), u32::from(rate_permille))
                    }
                    None => c.true_time(),
                }
            }
        } else if let Some(addr) = self.placed(t).and_then(|n| n.addr) {
            crate::net::skew_clock(addr, skew);
        }
    }

    /// An app node's clock as it reads it; a Redis node's as `TIME` answers, against true time
    /// halfway through the request.
    async fn clock_offset(&mut self, t: Target) -> Option<(String, i64)> {
        if let Target::App(i) = t {
            let c = self.clocks.get(usize::from(i))?;
            return Some(("its own reading".into(), c.offset_ms()));
        }
        let n = self.placed(t)?;
        let asked_ms = aside::wall::true_now_ms();
        let AdminReply::Time { ms } = self.tell(&n, TAG_REDIS, Admin::Time).await? else {
            return None;
        };
        let mid_ms = (asked_ms + aside::wall::true_now_ms()) / 2;
        Some(("TIME".into(), ms as i64 - mid_ms as i64))
    }

    async fn request_error(&mut self, t: Target) -> Option<(String, String)> {
        let n = self.placed(t)?;
        let (rpc, addr) = (self.rpc.clone(), n.addr?);
        // Long enough for a round trip under any latency a plan adds beside it.
        let asked = self
            .node
            .spawn(async move { ask_within(&rpc, t, addr, REQUEST_TIMEOUT).await })
            .await
            .ok()?;
        let path = format!("the nemesis to {} ({addr})", t.name());
        asked.err().map(|e| (path, e))
    }

    async fn replica_behind(&mut self, t: Target, lag_ms: u32) -> Option<String> {
        let pg = self.placed(t)?;
        match self.tell(&pg, TAG_PG, PgCmd::ReplayLag).await {
            Some(PgReply::LagMs(behind)) if behind >= u64::from(lag_ms) / 2 => Some(format!(
                "{}'s replay is {behind} ms behind the primary",
                pg.target.name()
            )),
            _ => None,
        }
    }
}
