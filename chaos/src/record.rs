//! The recorder: the library's results become history lines here, the same way in every world.
//! Clients, the nemesis and the probes share one [`Recorder`]; times are nanoseconds since its
//! origin (the history's zero, when the workload starts), on the world's clock (simulated in the
//! sim build, the host's monotonic clock otherwise).

use std::collections::BTreeMap;
use std::sync::Mutex;

use aside::events::{Action, ActionOutcome, CacheEvent, Events, Tier};
use aside::goal::Goal;
use aside::tier::TierError;
use aside::{Got, Key, Written};
use invariants::history::{
    ActOutcome, CacheAct, CacheAction, FaultAction, GoalLine, Header, Line, OpKind, OutboxLine,
    Outcome, Probe, Role, RoleLine, Source,
};
use invariants::write::{op, Writer};
use tokio::time::Instant;

use crate::fault::Fault;

/// One op as it will be written.
struct OpLine {
    client: u64,
    key: String,
    f: OpKind,
    invoke_ns: u64,
    complete_ns: u64,
    outcome: Outcome,
    version: Option<u64>,
    source: Option<Source>,
    payload: Option<String>,
}

struct FaultLine {
    at_ns: u64,
    action: FaultAction,
    fault: Fault,
    effect: Option<String>,
}

struct ProbeLine {
    key: String,
    at_ns: u64,
    tier: Source,
    version: Option<u64>,
}

/// Per coverage goal and node: times reached, and when first.
type Goals = BTreeMap<String, BTreeMap<String, (u64, u64)>>;

#[derive(Default)]
struct Lines {
    ops: Vec<OpLine>,
    faults: Vec<FaultLine>,
    cache: Vec<CacheAct<'static>>,
    probes: Vec<ProbeLine>,
    outbox: Vec<OutboxLine>,
    goals: Goals,
    roles: Vec<RoleLine<'static>>,
    /// Server addresses as the clients name them (`10.0.1.1:6379`), to the history's names.
    servers: BTreeMap<String, String>,
}

fn count_goal(goals: &mut Goals, goal: &str, node: &str, count: u64, at_ns: u64) {
    // Looked up by reference first: a goal reached again allocates nothing.
    if !goals.contains_key(goal) {
        goals.insert(goal.to_string(), BTreeMap::new());
    }
    let Some(nodes) = goals.get_mut(goal) else {
        return;
    };
    match nodes.get_mut(node) {
        Some((n, first)) => {
            *n += count;
            *first = (*first).min(at_ns);
        }
        None => {
            nodes.insert(node.to_string(), (count, at_ns));
        }
    }
}

/// Collects a run's lines; [`Recorder::finish`] writes the history: the header, ops in the order
/// they completed, fault lines, the library's cache actions (hand the recorder to
/// `CacheAside::with_events`), probes, and one line per coverage goal and node that reached it.
pub struct Recorder {
    origin: Instant,
    lines: Mutex<Lines>,
}

/// The history's name for where a read was served from.
pub fn source(g: &Got) -> Source {
    if g.waited {
        // Served by another read's load: no hit, no query of its own.
        return Source::Wait;
    }
    match g.source {
        aside::Source::L0 => Source::L0,
        aside::Source::L1 => Source::L1,
        aside::Source::L2 => Source::L2,
        aside::Source::Db => Source::Db,
        aside::Source::Replica => Source::Replica,
    }
}

impl Recorder {
    /// A recorder whose zero is now.
    pub fn start() -> Recorder {
        Recorder {
            origin: Instant::now(),
            lines: Mutex::default(),
        }
    }

    /// A recorder whose zero is `origin`: the app nodes of one run, each in its own process,
    /// share the history's zero this way (see `containers::app`).
    pub fn start_at(origin: Instant) -> Recorder {
        Recorder {
            origin,
            lines: Mutex::default(),
        }
    }

    /// Takes in the op, cache and goal lines of `history`, another recorder's output on the
    /// same zero (an app node that ran in its own process; its goal counts add to this one's);
    /// its header, fault and probe lines are not this run's and are skipped. Returns the number
    /// of ops taken.
    pub fn absorb(&self, history: &[u8]) -> Result<u64, String> {
        let mut lines = self.lines.lock().expect("recorder");
        let mut ops = 0;
        for (n, text) in history.split(|b| *b == b'\n').enumerate() {
            if text.is_empty() {
                continue;
            }
            let line = invariants::history::parse_line(text, false)
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            match line {
                Line::Op(o) => {
                    ops += 1;
                    lines.ops.push(OpLine {
                        client: o.client,
                        key: o.key.into_owned(),
                        f: o.f,
                        invoke_ns: o.invoke_ns,
                        complete_ns: o.complete_ns,
                        outcome: o.outcome,
                        version: o.version,
                        source: o.source,
                        payload: o.payload.map(|p| p.into_owned()),
                    });
                }
                Line::Cache(c) => lines.cache.push(c.into_owned()),
                Line::Goal(g) => count_goal(&mut lines.goals, &g.goal, &g.node, g.count, g.at_ns),
                Line::Header(_)
                | Line::Fault(_)
                | Line::Probe(_)
                | Line::Role(_)
                | Line::Outbox(_) => {}
            }
        }
        Ok(ops)
    }

    /// Nanoseconds since the history's zero.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// When the history's zero was.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    fn push_op(&self, line: OpLine) {
        self.lines.lock().expect("recorder").ops.push(line);
    }

    /// A read invoked at `invoke_ns` has just returned `result`. A read that returned no row or
    /// an error certainly returned no value: `fail`.
    pub fn read(
        &self,
        client: u64,
        key: &Key,
        invoke_ns: u64,
        result: &Result<Option<Got>, aside::Error>,
    ) {
        let complete_ns = self.now_ns();
        let line = match result {
            Ok(Some(g)) => OpLine {
                client,
                key: key.to_string(),
                f: OpKind::Read,
                invoke_ns,
                complete_ns,
                outcome: Outcome::Ok,
                version: Some(g.row.version),
                source: Some(source(g)),
                payload: String::from_utf8(g.row.payload.clone()).ok(),
            },
            _ => OpLine {
                client,
                key: key.to_string(),
                f: OpKind::Read,
                invoke_ns,
                complete_ns,
                outcome: Outcome::Fail,
                version: None,
                source: None,
                payload: None,
            },
        };
        self.push_op(line);
    }

    /// A write invoked at `invoke_ns` has just returned `result`. The database refusing it is a
    /// `fail`; any other error (a timeout, a lost reply) may have committed: `unknown`.
    /// A key that another key's write changed in the same transaction (a sibling listing):
    /// written at `version`, or unknown when the transaction's outcome is.
    pub fn write_in_tx(&self, client: u64, key: &str, invoke_ns: u64, version: Option<u64>) {
        self.push_op(OpLine {
            client,
            key: key.to_string(),
            f: OpKind::Write,
            invoke_ns,
            complete_ns: self.now_ns(),
            outcome: if version.is_some() {
                Outcome::Ok
            } else {
                Outcome::Unknown
            },
            version,
            source: None,
            payload: None,
        });
    }

    pub fn write(
        &self,
        client: u64,
        key: &Key,
        invoke_ns: u64,
        result: &Result<Written, aside::Error>,
    ) {
        let complete_ns = self.now_ns();
        let (outcome, version) = match result {
            Ok(w) => (Outcome::Ok, Some(w.version)),
            Err(aside::Error::Db(TierError::Refused { .. })) => (Outcome::Fail, None),
            Err(_) => (Outcome::Unknown, None),
        };
        self.push_op(OpLine {
            client,
            key: key.to_string(),
            f: OpKind::Write,
            invoke_ns,
            complete_ns,
            outcome,
            version,
            source: None,
            payload: None,
        });
    }

    /// A fault line at now; `effect` on `observed` lines.
    pub fn fault(&self, action: FaultAction, fault: Fault, effect: Option<String>) {
        self.fault_at(self.now_ns(), action, fault, effect);
    }

    /// A fault line at `at_ns` (a start is stamped when the nemesis began applying it).
    pub fn fault_at(&self, at_ns: u64, action: FaultAction, fault: Fault, effect: Option<String>) {
        self.lines.lock().expect("recorder").faults.push(FaultLine {
            at_ns,
            action,
            fault,
            effect,
        });
    }

    /// `node` reached coverage goal `goal` `count` times, first at `at_ns` (a server model's,
    /// collected by the world: the library's come through [`Events::goal`]).
    pub fn goal_at(&self, goal: Goal, node: &str, count: u64, at_ns: u64) {
        let mut lines = self.lines.lock().expect("recorder");
        count_goal(&mut lines.goals, goal.name(), node, count, at_ns);
    }

    /// The history names the server at `addr` (as the clients name it, `host:port`) `name`
    /// (`redis-master`) in the `server` of every cache line, whenever the line was recorded.
    pub fn name_server(&self, addr: impl Into<String>, name: impl Into<String>) {
        let mut lines = self.lines.lock().expect("recorder");
        lines.servers.insert(addr.into(), name.into());
    }

    /// Redis node `server` (its name in the history) of shard `shard` (its master/replica
    /// pair, from 0) took `role` at `at_ns`. A node that takes the role it has (a restart in
    /// it) makes no line.
    pub fn role_at(&self, server: &str, shard: u64, role: Role, at_ns: u64) {
        self.lines.lock().expect("recorder").roles.push(RoleLine {
            server: server.to_string().into(),
            shard,
            role,
            at_ns,
        });
    }

    /// An end-of-run read of one tier (`None`: it holds nothing for the key) at `at_ns`.
    pub fn probe(&self, key: &str, at_ns: u64, tier: Source, version: Option<u64>) {
        self.lines.lock().expect("recorder").probes.push(ProbeLine {
            key: key.to_string(),
            at_ns,
            tier,
            version,
        });
    }

    /// The outbox's backlog read at `at_ns` (an `outbox` line).
    pub fn outbox(&self, at_ns: u64, undone: u64) {
        (self.lines.lock().expect("recorder").outbox).push(OutboxLine { at_ns, undone });
    }

    /// Ops recorded so far.
    pub fn ops(&self) -> u64 {
        self.lines.lock().expect("recorder").ops.len() as u64
    }

    /// The history, header first; ops numbered in the order they completed (lines absorbed from
    /// other processes take their place by time), cache lines by the time they ended.
    pub fn finish(&self, header: &Header) -> Vec<u8> {
        let mut lines = std::mem::take(&mut *self.lines.lock().expect("recorder"));
        // Stable: lines of one process are already in this order (each is pushed as it ends).
        lines.ops.sort_by_key(|o| o.complete_ns);
        lines.cache.sort_by_key(|c| c.at_ns);
        // Stable: one server's lines of one time keep the order they were taken in.
        lines
            .roles
            .sort_by(|a, b| (a.at_ns, &a.server).cmp(&(b.at_ns, &b.server)));
        let mut held: BTreeMap<String, Role> = BTreeMap::new();
        lines
            .roles
            .retain(|r| held.insert(r.server.to_string(), r.role) != Some(r.role));
        for c in &mut lines.cache {
            if let Some(name) = c.server.as_deref().and_then(|a| lines.servers.get(a)) {
                c.server = Some(name.clone().into());
            }
        }
        let mut w = Writer::new(Vec::new());
        w.header(header).expect("vec");
        for (i, r) in lines.ops.iter().enumerate() {
            let mut o = op(
                i as u64 + 1,
                r.client,
                &r.key,
                r.f,
                r.invoke_ns,
                r.complete_ns,
                r.outcome,
            );
            o.version = r.version;
            o.source = r.source;
            o.payload = r.payload.as_deref().map(Into::into);
            w.op(&o).expect("vec");
        }
        for f in &lines.faults {
            w.fault(f.at_ns, f.action, &f.fault.to_json(), f.effect.as_deref())
                .expect("vec");
        }
        for r in &lines.roles {
            w.role(r).expect("vec");
        }
        for c in &lines.cache {
            w.cache(c).expect("vec");
        }
        for p in &lines.probes {
            w.probe(&Probe {
                key: p.key.as_str().into(),
                at_ns: p.at_ns,
                tier: p.tier,
                version: p.version,
            })
            .expect("vec");
        }
        for o in &lines.outbox {
            w.outbox(o).expect("vec");
        }
        for (goal, nodes) in &lines.goals {
            for (node, (count, at_ns)) in nodes {
                w.goal(&GoalLine {
                    goal: goal.as_str().into(),
                    node: node.as_str().into(),
                    count: *count,
                    at_ns: *at_ns,
                })
                .expect("vec");
            }
        }
        w.into_inner()
    }
}

/// The library's actions become `cache` lines, so that a stale read's witness can name the load,
/// the invalidation and the fill behind it.
impl Events for Recorder {
    fn on(&self, e: &CacheEvent<'_>) {
        let at_ns = self.now_ns();
        let line = CacheAct {
            node: e.instance.to_string().into(),
            key: e.key.to_string().into(),
            action: match e.action {
                Action::Load => CacheAction::Load,
                Action::Fill => CacheAction::Fill,
                Action::Invalidate => CacheAction::Invalidate,
                Action::LeaseWon => CacheAction::LeaseWon,
                Action::LeaseLost => CacheAction::LeaseLost,
            },
            tier: match e.tier {
                Tier::L1 => Source::L1,
                Tier::L2 => Source::L2,
                Tier::Db => Source::Db,
                Tier::Replica => Source::Replica,
            },
            version: e.version,
            outcome: match e.outcome {
                ActionOutcome::Ok => ActOutcome::Ok,
                ActionOutcome::Refused => ActOutcome::Refused,
                ActionOutcome::Failed => ActOutcome::Failed,
            },
            start_ns: e.started.saturating_duration_since(self.origin).as_nanos() as u64,
            at_ns,
            server: e.server.map(|s| s.to_string().into()),
        };
        self.lines.lock().expect("recorder").cache.push(line);
    }

    fn goal(&self, instance: &str, goal: Goal) {
        let at_ns = self.now_ns();
        let mut lines = self.lines.lock().expect("recorder");
        count_goal(&mut lines.goals, goal.name(), instance, 1, at_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use invariants::history::{parse_line, FORMAT};

    fn header() -> Header {
        Header {
            format: FORMAT,
            world: "test".into(),
            scenario: "goals".into(),
            strategy: "versioned".into(),
            seed: 0,
            commit: "test".into(),
            config: Default::default(),
        }
    }

    fn goal_lines(history: &[u8]) -> Vec<(String, String, u64)> {
        history
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| match parse_line(l, false).unwrap() {
                Line::Goal(g) => Some((g.goal.into_owned(), g.node.into_owned(), g.count)),
                _ => None,
            })
            .collect()
    }

    /// A role a node already has makes no line (a restart in it), one it changes to does, and
    /// the lines come out by time whatever order they were taken in.
    #[test]
    fn role_lines_are_written_by_time_and_only_when_the_role_changes() {
        let rec = Recorder::start();
        rec.role_at("redis-replica", 0, Role::Master, 40);
        rec.role_at("redis-master", 0, Role::Master, 0);
        rec.role_at("redis-master", 0, Role::Master, 70);
        rec.role_at("redis-master", 0, Role::Replica, 90);
        let history = rec.finish(&header());
        let roles: Vec<(String, Role, u64)> = history
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| match parse_line(l, false).unwrap() {
                Line::Role(r) => Some((r.server.into_owned(), r.role, r.at_ns)),
                _ => None,
            })
            .collect();
        assert_eq!(
            roles,
            vec![
                ("redis-master".into(), Role::Master, 0),
                ("redis-replica".into(), Role::Master, 40),
                ("redis-master".into(), Role::Replica, 90),
            ]
        );
    }

    /// Goals are counted per goal and node, written once each at the end in name order, and an
    /// app node's history absorbed from its own process adds its counts.
    #[tokio::test]
    async fn goals_are_counted_per_node_and_absorbed_from_other_processes() {
        let app = Recorder::start();
        app.goal("app-2", Goal::LeaseWaited);
        let app_history = app.finish(&header());
        let rec = Recorder::start_at(app.origin());
        rec.goal("app-1", Goal::LeaseWaited);
        rec.goal("app-1", Goal::LeaseWaited);
        rec.goal_at(Goal::SentinelPromoted, "sentinel-1", 3, 7);
        rec.absorb(&app_history).unwrap();
        rec.absorb(&app_history).unwrap();
        assert_eq!(
            goal_lines(&rec.finish(&header())),
            vec![
                ("lease-waited".into(), "app-1".into(), 2),
                ("lease-waited".into(), "app-2".into(), 2),
                ("sentinel-promoted".into(), "sentinel-1".into(), 3),
            ]
        );
    }
}
