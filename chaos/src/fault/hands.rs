//! What a world's nemesis can do with its own hands: the primitives every fault kind is made of.
//! A kind's module ([`super::kill`], [`super::partition`], ...) says which primitives its start,
//! its heal and its observation use; each world implements them once, over madsim or over
//! Docker. A new kind that needs no new primitive touches no world at all.

use std::time::Duration;

use super::{Fault, Side, Target};

/// What the kinds remember between a fault's start and its heal (in the world's nemesis).
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// Caches that took the flush marker and were flushed: the flush shows once it is gone.
    pub flushed: Vec<Target>,
    /// Keys each limited cache node had evicted when its memory limit began, and the KiB it is
    /// held to.
    pub evicted_before: Vec<(Target, u64, u32)>,
    /// The memcached ring a `ring` fault last set (`None`: the ring the world booted).
    pub ring: Option<Vec<Target>>,
    /// Per node a `ring` fault moved: reads it had answered, and the other nodes together, at
    /// the look its effect is judged from.
    pub reads_seen: Vec<(Target, u64, u64)>,
    /// Copies each node had absorbed when a `duplicate` fault began
    /// ([`Hands::copies_absorbed`]).
    pub absorbed_before: Vec<(Target, u64)>,
}

/// A world's primitives. Acting ones apply to one node (by its role at boot) or to the network;
/// looking ones report what they saw in the world's own words, for the history's `observed`
/// line, and `None` when they saw nothing (or could not look).
// The simulator runs everything on one thread: no `Send` bound on the futures.
#[allow(async_fn_in_trait)]
pub trait Hands {
    /// The nodes on `side` this world has (servers, then app nodes that are nodes of their own),
    /// in the world's order.
    fn targets(&self, side: Side) -> Vec<Target>;
    /// What the kinds remember while their faults are on.
    fn kept(&mut self) -> &mut Kept;

    /// Kills `t`'s process: what it held in memory is gone.
    async fn kill(&mut self, t: Target);
    /// Starts a killed `t` again.
    async fn restart(&mut self, t: Target);
    /// Freezes `t`: it runs nothing until resumed, state intact.
    async fn pause(&mut self, t: Target);
    async fn resume(&mut self, t: Target);
    /// Cuts the links between `fault.target` and `peers` (only the peers' messages to the target
    /// when `one_way`).
    async fn cut(&mut self, fault: &Fault, peers: Side, one_way: bool);
    /// Repairs what [`Hands::cut`] cut for `fault`.
    async fn uncut(&mut self, fault: &Fault, peers: Side, one_way: bool);
    /// Adds `one_way_ms` to every message of the network's (`None`: its own latency again).
    async fn delay(&mut self, one_way_ms: Option<u32>);
    /// Drops each message with probability `per_mille` / 1000 (`None`: stop `fault`'s loss).
    async fn drop_messages(&mut self, fault: &Fault, per_mille: Option<u16>);
    /// Delivers each message twice with probability `per_mille` / 1000 (`None`: stop `fault`'s
    /// copying). Which messages a world can copy is its own: the module doc of
    /// [`super::duplicate`] says.
    async fn duplicate_messages(&mut self, fault: &Fault, per_mille: Option<u16>);
    /// Writes [`super::effect::FLUSH_MARKER`] to cache `t`; true if it was stored.
    async fn mark(&mut self, t: Target) -> bool;
    /// Empties cache `t` (FLUSHALL, `flush_all`).
    async fn flush(&mut self, t: Target);
    /// Cache `t` (Redis, memcached) may hold `kib` KiB, evicting least recently used keys
    /// (`None`: its boot limit again). Returns the KiB it is held to, which a real server's
    /// floor may raise (memcached's is 8 MiB); after a heal, the boot limit (0 for Redis: none).
    async fn limit_memory(&mut self, t: Target, kib: Option<u32>) -> u32;
    /// PostgreSQL `t` applies the primary's log `lag_ms` behind (`None`: its own delay again).
    async fn lag_replica(&mut self, t: Target, lag_ms: Option<u32>);
    /// PostgreSQL `t` answers every query of the app nodes' `query_ms` later (`None`: at its own
    /// pace again).
    async fn slow_queries(&mut self, t: Target, query_ms: Option<u32>);
    /// Every app node's memcached ring is made of `members`: staged on all of them, then
    /// committed on all ([`aside::Membership`]).
    async fn set_ring(&mut self, members: &[Target]);
    /// With `on`, every reply server `t` sends a client (an app node, the nemesis's probes;
    /// not another server) is replaced by a TCP reset, after the command ran; without, replies
    /// go through again.
    async fn reset_replies(&mut self, t: Target, on: bool);
    /// With `on`, server `t` takes every request a client (an app node, the nemesis's probes;
    /// not another server) sends and answers none; without, it runs what it held and answers
    /// again.
    async fn stall_requests(&mut self, t: Target, on: bool);
    /// With `on`, server `t`'s end of every connection a client (an app node, the nemesis's
    /// probes; not another server) holds or opens is gone: what the client sends is dropped
    /// and nothing is answered; without, each of those connections is reset (a request first
    /// sent on one is answered with a reset), and new ones are served.
    async fn half_open(&mut self, t: Target, on: bool);
    /// Node `t`'s wall clock jumps `jump_ms` (negative: back) and runs at `rate_permille` /
    /// 1000 of true speed from then on (`None`: true time again).
    async fn skew_clock(&mut self, t: Target, skew: Option<(i32, u16)>);

    /// Why `t` looks down or frozen to a client (a request unanswered, a task not run), if it
    /// does.
    async fn unreachable(&mut self, t: Target) -> Option<String>;
    /// What shows that `fault`'s cut to `peers` is on (a request from one side to a server on
    /// the other unanswered), if anything does.
    async fn cut_seen(&mut self, fault: &Fault, peers: Side) -> Option<String>;
    /// One round trip to a server the way an app node's goes: the path taken and its time.
    async fn round_trip(&mut self) -> Option<(String, Duration)>;
    /// [`super::effect::LOSS_BURST`] requests at once to a server: the path, how many got no
    /// reply, and within what timeout.
    async fn loss_burst(&mut self) -> Option<(String, usize, Duration)>;
    /// Per node that could be read, how many copied messages it (or its peers, for it) absorbed
    /// so far: dropped or answered as copies of what it had, never run twice; and what counted
    /// them. While a `duplicate` fault is on, the count includes the copies of messages sent
    /// just before the call.
    async fn copies_absorbed(&mut self) -> (Vec<(Target, u64)>, String);
    /// Does cache `t` still hold the flush marker? `None` when it does not answer.
    async fn holds_marker(&mut self, t: Target) -> Option<bool>;
    /// How many keys cache `t` has evicted so far, and what the count was read from.
    async fn evicted(&mut self, t: Target) -> Option<(u64, String)>;
    /// How many reads memcached `t` has answered so far, and what the count was read from.
    async fn reads_served(&mut self, t: Target) -> Option<(u64, String)>;
    /// Each app node's memcached ring now, as the app node routes reads.
    async fn rings(&mut self) -> Vec<Vec<Target>>;
    /// What shows PostgreSQL `t` replaying at least half of `lag_ms` behind, if anything does.
    async fn replica_behind(&mut self, t: Target, lag_ms: u32) -> Option<String>;
    /// One query to PostgreSQL `t` the way an app node's goes: the path taken and its time.
    async fn query_time(&mut self, t: Target) -> Option<(String, Duration)>;
    /// Sends server `t` one harmless request the way a client's goes, without waiting for its
    /// answer, and says how many requests `t` holds now under a `stall`, and what counted them.
    async fn requests_held(&mut self, t: Target) -> Option<(u64, String)>;
    /// Sends server `t` one harmless request the way a client's goes, without waiting for its
    /// answer, and says how many requests (or chunks) a `half-open` fault dropped at `t` so far,
    /// and what counted them.
    async fn requests_dropped(&mut self, t: Target) -> Option<(u64, String)>;
    /// How far node `t`'s wall clock reads from true time, in ms (positive: ahead), and what it
    /// was read from; `None` when it could not be read.
    async fn clock_offset(&mut self, t: Target) -> Option<(String, i64)>;
    /// One harmless request to server `t` the way a client's goes: the path taken and the error
    /// it got; `None` when it was answered, when the server does not answer a request sent
    /// to it straight either (down, not resetting), or when this world has no client's way
    /// to it (no proxies).
    async fn request_error(&mut self, t: Target) -> Option<(String, String)>;
}
