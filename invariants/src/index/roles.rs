//! The Redis nodes' roles over time, from the history's `role` lines: which node was a master
//! when an `l1` action reached it, and whether it was demoted afterwards (a demotion resyncs the
//! node from its new master, discarding every write it acknowledged meanwhile). Nodes of one
//! shard (one master/replica pair, `shard` in the line) are looked at together; the fault
//! lines say whether two nodes were cut apart, or one was down.

use super::Index;
use crate::history::Role;

/// One `role` line.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRec {
    pub server: Box<str>,
    /// The node's shard (its master/replica pair).
    pub shard: u64,
    pub role: Role,
    pub at_ns: u64,
    pub line: u64,
}

impl Index {
    /// `server`'s role at `t_ns`: its last role line at or before then.
    pub fn role_at(&self, server: &str, t_ns: u64) -> Option<&RoleRec> {
        self.roles
            .iter()
            .take_while(|r| r.at_ns <= t_ns)
            .filter(|r| &*r.server == server)
            .last()
    }

    /// The first time after `t_ns` that `server`, then a master, was made a replica: the end of
    /// whatever it acknowledged as a master since.
    pub fn demotion_after(&self, server: &str, t_ns: u64) -> Option<&RoleRec> {
        if self.role_at(server, t_ns)?.role != Role::Master {
            return None;
        }
        self.roles
            .iter()
            .find(|r| r.at_ns > t_ns && &*r.server == server && r.role == Role::Replica)
    }

    /// The role lines of `server`'s shard but not of `server`.
    fn peers(&self, server: &str) -> Vec<&RoleRec> {
        let shard = self
            .roles
            .iter()
            .find(|r| &*r.server == server)
            .map(|r| r.shard);
        self.roles
            .iter()
            .filter(|r| Some(r.shard) == shard && &*r.server != server)
            .collect()
    }

    /// The first other node of `server`'s shard made a master after `t_ns`.
    pub fn promotion_after(&self, server: &str, t_ns: u64) -> Option<&RoleRec> {
        self.peers(server)
            .into_iter()
            .find(|r| r.at_ns > t_ns && r.role == Role::Master)
    }

    /// Another node of `server`'s shard that became a master by `t_ns` and still was one then:
    /// who a demoted node resynced from.
    pub fn other_master_at(&self, server: &str, t_ns: u64) -> Option<&RoleRec> {
        let mut latest: Vec<&RoleRec> = Vec::new();
        for r in self
            .peers(server)
            .into_iter()
            .take_while(|r| r.at_ns <= t_ns)
        {
            latest.retain(|l| l.server != r.server);
            latest.push(r);
        }
        latest
            .into_iter()
            .filter(|r| r.role == Role::Master)
            .max_by_key(|r| (r.at_ns, r.line))
    }

    /// Whether a `partition` between `a` and `b` (either one the target, the other the peers)
    /// was on over all of `[from, to]`.
    pub fn cut_between(&self, a: &str, b: &str, from: u64, to: u64) -> bool {
        self.faults.iter().any(|f| {
            let Some((kind, target, peers)) = fields(&f.fault) else {
                return false;
            };
            kind == "partition"
                && ((target == a && peers == b) || (target == b && peers == a))
                && f.start_ns <= from
                && f.end_ns >= to
        })
    }

    /// Whether `server` was killed or paused at `t_ns`.
    pub fn down_at(&self, server: &str, t_ns: u64) -> bool {
        self.faults.iter().any(|f| {
            fields(&f.fault).is_some_and(|(kind, target, _)| {
                matches!(kind.as_str(), "kill" | "pause") && target == server
            }) && f.start_ns <= t_ns
                && t_ns < f.end_ns
        })
    }
}

/// A fault's kind, target and peers (empty when it has none).
fn fields(fault: &str) -> Option<(String, String, String)> {
    let f: serde_json::Value = serde_json::from_str(fault).ok()?;
    let text = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    Some((text("kind"), text("target"), text("peers")))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{H, MS};
    use serde_json::json;

    /// A split brain: redis-master isolated, redis-replica promoted at 40 ms, redis-master
    /// demoted at 90 ms.
    fn split_brain() -> crate::index::Index {
        let mut h = H::new(json!({}));
        h.role("redis-master", "master", 0);
        h.role("redis-replica", "replica", 0);
        h.role("redis-replica", "master", 40 * MS);
        h.role("redis-master", "replica", 90 * MS);
        h.write(1, "k", (MS, 2 * MS), 1);
        h.index()
    }

    #[test]
    fn a_master_demoted_later_is_found_and_a_replica_or_a_later_action_is_not() {
        let idx = split_brain();
        let d = idx
            .demotion_after("redis-master", 60 * MS)
            .expect("demoted");
        assert_eq!(d.at_ns, 90 * MS);
        let m = idx
            .other_master_at("redis-master", d.at_ns)
            .expect("promoted");
        assert_eq!((&*m.server, m.at_ns), ("redis-replica", 40 * MS));
        // Twins: after its demotion it is a replica, and the promoted node is never demoted.
        assert!(idx.demotion_after("redis-master", 95 * MS).is_none());
        assert!(idx.demotion_after("redis-replica", 60 * MS).is_none());
        assert!(idx.demotion_after("memcached-1", 60 * MS).is_none());
        let p = idx
            .promotion_after("redis-master", 10 * MS)
            .expect("promoted");
        assert_eq!((&*p.server, p.at_ns), ("redis-replica", 40 * MS));
        assert!(idx.promotion_after("redis-master", 40 * MS).is_none());
        assert_eq!(
            idx.role_at("redis-replica", 39 * MS).map(|r| r.role),
            Some(crate::history::Role::Replica)
        );
    }
}
