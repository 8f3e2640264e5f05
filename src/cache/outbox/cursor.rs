//! The cursor over outbox ids that commit late or never ([`super`]: "Outbox ids are assigned
//! when a transaction inserts its row"): rows read go to `pending`, and the cursor advances over
//! what is contiguous, waiting on a gap until it is older than W.

use super::*;

/// Missing outbox ids the cursor waits on: every id from `at` to `hi` not read yet has been
/// missing since `since` (when `hi` was the highest id read), so once that is W ago they are all
/// given up at once; waiting W for each in turn, the cursor would fall behind for good as soon
/// as more than one transaction per W rolls back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gap {
    /// The missing id the cursor is at.
    at: u64,
    hi: u64,
    since: Instant,
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    pub(super) fn take_rows(&self, rows: Vec<OutboxRow>) {
        let now = Instant::now();
        let gap_max = Duration::from_millis(self.cfg.replay_window_ms);
        let mut st = self.repair.lock();
        for r in rows {
            if r.id <= st.cursor || !st.above.insert(r.id) {
                continue;
            }
            // This instance's own writes are known before the outbox names them.
            let remote = r.version > st.known.get(&r.key).map_or(0, |e| e.0);
            st.know(&r.key, r.version, now);
            let shard = self.l1.map().shard_of(&r.key);
            st.pending.insert(
                r.id,
                Due {
                    key: r.key,
                    version: r.version,
                    l1: true,
                    l2: true,
                    shard,
                    replay: false,
                    remote,
                },
            );
        }
        // Advance over what is contiguous; a gap holds the cursor until it is older than W.
        let mut reached = Vec::new();
        loop {
            let next = st.cursor + 1;
            if st.above.remove(&next) {
                if st.gap.is_some_and(|g| g.at == next) {
                    reached.push(Goal::OutboxGapFilled);
                }
                st.cursor = next;
                if st.gap.is_some_and(|g| g.hi <= next) {
                    st.gap = None;
                }
                continue;
            }
            let Some(&top) = st.above.last() else {
                break;
            };
            match st.gap {
                Some(g) if next <= g.hi && now.duration_since(g.since) >= gap_max => {
                    warn!(
                        id = next,
                        "outbox id never committed (a rolled-back write?): skipping it"
                    );
                    reached.push(Goal::OutboxGapSkipped);
                    st.cursor = next;
                }
                Some(g) if next <= g.hi => {
                    st.gap = Some(Gap { at: next, ..g });
                    break;
                }
                _ => {
                    reached.push(Goal::OutboxGapWaited);
                    st.gap = Some(Gap {
                        at: next,
                        hi: top,
                        since: now,
                    });
                    break;
                }
            }
        }
        st.known
            .retain(|_, (_, at)| now.duration_since(*at) < gap_max);
        drop(st);
        for goal in reached {
            self.reach(goal);
        }
    }
}
