//! What the simulator promises, cell by cell: for every (scenario, strategy), either the strategy
//! holds on every seed of a fixed range, or the harness finds named invariants failing on some
//! seed of it. The README's results table, `cargo sim-test` (`tests/table.rs`) and the nightly
//! gate all read this one list, so a promise cannot be stated in one place and broken in another.

use aside::Builtin;

/// The seeds every cell is judged on in the test command and the README table.
pub const SEEDS: std::ops::RangeInclusive<u64> = 1..=20;

/// What a cell promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No gating invariant fails on any seed.
    Holds,
    /// Some seed fails, and every invariant named here fails on at least one seed (others may
    /// fail too: they are reported, not promised).
    Finds(&'static [&'static str]),
}

/// One promise of the table.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub scenario: &'static str,
    pub strategy: Builtin,
    pub expect: Expect,
    /// Why, in a sentence a user can act on (shown in the README table).
    pub why: &'static str,
    /// The cell's runs use BUGGIFY (`crate::buggify`): only for findings, whose race window is
    /// too narrow to show within the seeds otherwise (`cargo sim stf` shows how narrow). Never
    /// for a cell that holds: BUGGIFY's delays bend the latency bounds.
    pub buggify: bool,
}

impl Cell {
    fn buggified(self) -> Cell {
        assert!(
            matches!(self.expect, Expect::Finds(_)),
            "{}: BUGGIFY is for findings",
            self.scenario
        );
        Cell {
            buggify: true,
            ..self
        }
    }

    /// The cell's scenario as its runs use it.
    pub fn scenario(&self) -> Result<chaos::scenario::Scenario, String> {
        let mut sc = chaos::scenario::find(self.scenario)?;
        sc.buggify = self.buggify;
        Ok(sc)
    }
}

const RACE: &[&str] = &["staleness", "convergence"];

/// The invariant that fails when a fault did not take effect.
pub const HARNESS_ERROR: &str = "fault-effect";

/// Every promise, in table order.
pub fn cells() -> Vec<Cell> {
    use Builtin::{Durable, Naive, Versioned};
    use Expect::{Finds, Holds};
    let cell = |scenario, strategy, expect, why| Cell {
        scenario,
        strategy,
        expect,
        why,
        buggify: false,
    };
    vec![
        cell("fill-race", Naive, Finds(RACE), "a miss loads the old row, the writer deletes, the late fill puts the old row back"),
        cell("fill-race", Versioned, Holds, "a fill older than the tombstone is refused"),
        cell("fill-race", Durable, Holds, "fills and tombstones as `versioned`; the invalidator's repairs leave an entry of the written version alone"),
        cell("replica-lag", Naive, Finds(&["staleness", "convergence", "read-your-writes"]), "misses read the replica 50 ms behind and cache what it returns"),
        cell("replica-lag", Versioned, Finds(&["read-your-writes", "hit-ratio"]), "no stale fill survives the tombstone, but a replica read right after a client's own write returns its old row, and refused fills cost hits"),
        cell("replica-lag", Durable, Holds, "the replica guard: a miss reads the primary while the replica has not replayed the version the outbox named"),
        cell("redis-failover", Naive, Finds(&["staleness", "convergence"]), "invalidations fail while the master is down and are never retried"),
        cell("redis-failover", Versioned, Finds(&["staleness", "convergence"]), "tombstones not yet replicated die with the old master; only an outbox and an invalidator (`durable`, DESIGN.md) fix this"),
        cell("redis-failover", Durable, Holds, "the switch fences L1 at once and the invalidator replays the last W of the outbox on the new master"),
        cell("memcached-restart", Naive, Finds(RACE), "the fill race again, on the misses the empty node causes"),
        cell("memcached-restart", Versioned, Finds(&["staleness", "convergence"]), "the app node's breaker keeps memcached-1's circuit open for a cooldown after the node is back; an invalidation skipped then is never retried, so a value filled before it stays (the outbox of `durable` retries it)").buggified(),
        cell("memcached-restart", Durable, Holds, "an invalidation the open circuit skipped fences the node until the invalidator applies it"),
        cell("stale-while-revalidate", Naive, Finds(&["staleness"]), "the race, now on the refreshes of aged entries"),
        cell("stale-while-revalidate", Versioned, Holds, "aged entries are served while one reader refreshes; a refresh older than a tombstone is refused"),
        cell("stale-while-revalidate", Durable, Holds, "as `versioned`"),
        cell("partition-app-l1", Naive, Finds(&["staleness", "convergence"]), "writes during the cut cannot delete from Redis, and nothing retries them"),
        cell("partition-app-l1", Versioned, Finds(&["staleness", "convergence"]), "tombstones that cannot reach Redis during the cut are lost: the old values stay (an outbox fixes this)"),
        cell("partition-app-l1", Durable, Holds, "a tombstone that cannot reach Redis fences L1 until the invalidator applies it after the cut"),
        cell("partition-app-l2", Naive, Finds(&["staleness", "convergence"]), "memcached keeps the values writes could not delete; after the cut L1 misses refill from them"),
        cell("partition-app-l2", Versioned, Finds(&["staleness", "convergence"]), "memcached keeps the old values the cut kept tombstones from; an L2 hit serves them (the L1 refill is refused, the read is not)"),
        cell("partition-app-l2", Durable, Holds, "a tombstone that cannot reach a memcached node fences that node until the invalidator applies it"),
        cell("partition-app-db", Naive, Holds, "misses and writes wait out the 1 s cut: their requests are resent, as over TCP, and answered within the 2 s database deadline; hits go on"),
        cell("partition-app-db", Versioned, Holds, "misses and writes wait out the 1 s cut: their requests are resent, as over TCP, and answered within the 2 s database deadline; hits go on"),
        cell("partition-app-db", Durable, Holds, "misses and writes wait out the 1 s cut: their requests are resent, as over TCP, and answered within the 2 s database deadline; hits go on"),
        cell("one-way-partition", Naive, Finds(&["staleness"]), "the replies lost during the cut arrive after it, resent: a load that read the old row before a write completes after it, and its fill lands after the write's delete"),
        cell("one-way-partition", Versioned, Finds(&["staleness"]), "a reader joins its own app node's load that began before another node's write; the load's reply, resent after the cut, arrives after the write completed and serves the old row (`durable`'s invalidator closes the key's load when the outbox row arrives)"),
        cell("one-way-partition", Durable, Holds, "PostgreSQL's replies are lost for 1 s: the resent requests are answered from its reply cache once the link heals, within the 2 s deadline (nothing runs twice)"),
        cell("sentinel-partition", Naive, Finds(&[]), "one Sentinel alone promotes nothing; the fill race remains"),
        cell("sentinel-partition", Versioned, Holds, "one Sentinel alone promotes nothing"),
        cell("sentinel-partition", Durable, Holds, "one Sentinel alone promotes nothing"),
        cell("split-brain", Naive, Finds(&["staleness", "convergence"]), "deletes app-1 sent to the isolated old master are acknowledged, then discarded when the Sentinels demote it; the promoted replica keeps the old values"),
        cell("split-brain", Versioned, Finds(&["staleness", "convergence"]), "tombstones acknowledged by the isolated old master are discarded when it is demoted and resyncs (Jepsen's Redis finding); only `min-replicas-to-write` and an outbox replayed against the new master (`durable`) fix this"),
        cell("split-brain", Durable, Holds, "every app node's invalidator applies every outbox row, so app-1's writes reach the new master through the majority's; app-1 replays W when it follows the switch"),
        cell("memcached-rejoin", Naive, Finds(&["staleness", "convergence"]), "deletes that could not reach the frozen node are lost: it rejoins with the old values"),
        cell("memcached-rejoin", Versioned, Finds(&["staleness", "convergence"]), "tombstones that could not reach the frozen node are lost: it rejoins with the old values (`durable` fences the node until its invalidator has applied them)"),
        cell("memcached-rejoin", Durable, Holds, "the frozen node is fenced by every app node that could not tombstone it, until their invalidators have"),
        cell("app-pause", Naive, Finds(&["staleness"]), "the frozen app finishes a fill of an old row after the lease expired and writes moved on"),
        cell("app-pause", Versioned, Holds, "late fills are refused by tombstones; a narrower race, a writer frozen between its L1 and L2 tombstones that wakes past the L2 call's deadline, leaves the L2 tombstone unwritten on 4 of seeds 1-200 (first: seed 29), never on these"),
        cell("app-pause", Durable, Holds, "the L2 tombstone the frozen writer never sent is applied by the other app nodes' invalidators"),
        cell("latency-spike", Naive, Finds(&["staleness", "convergence"]), "Redis calls time out for the spike: deletes are lost and never retried"),
        cell("latency-spike", Versioned, Finds(&["staleness", "convergence"]), "Redis calls time out for the spike: tombstones are lost and never retried (at 40 ms too, on 2 of seeds 1-20 and 3 of seeds 100-159: an L2 tombstone's gets + cas can outlast memcached's 200 ms timeout)"),
        cell("latency-spike", Durable, Holds, "timed-out tombstones fence the tier; the invalidator's retries do not trip the breakers reads use"),
        cell("packet-loss", Naive, Finds(&["staleness", "convergence"]), "a lost delete is never retried"),
        cell("packet-loss", Versioned, Finds(&["staleness", "convergence"]), "a lost tombstone is never retried (an outbox fixes this)"),
        cell("packet-loss", Durable, Holds, "a lost tombstone fences its tier until the invalidator's retry lands; lost requests are resent, as over TCP"),
        cell("pg-lag-spike", Naive, Finds(&["staleness", "convergence"]), "misses read rows 2 s old from the replica and cache them"),
        cell("pg-lag-spike", Versioned, Finds(&["staleness", "read-your-writes"]), "tombstones refuse every fill of the replica's old rows, but the miss itself returns the old row: reads are served 2 s stale (`durable`'s replica guard reads the primary while the replica is behind)"),
        cell("pg-lag-spike", Durable, Holds, "the replica guard sends misses to the primary while the replica is behind"),
        cell("redis-memory-full", Naive, Finds(&["staleness"]), "evictions only cost hits; the fill race remains"),
        cell("redis-memory-full", Versioned, Holds, "Redis evicts (L1 hit ratio during the limit is reported), memcached absorbs the misses, fills stay ordered by tombstones"),
        cell("redis-memory-full", Durable, Holds, "as `versioned`"),
        cell("cold-start", Naive, Finds(&["staleness"]), "single-flight keeps the database under its ceiling; the fill race of the refill remains").buggified(),
        cell("cold-start", Versioned, Holds, "single-flight and leases refill both tiers within one database read per key per app node"),
        cell("cold-start", Durable, Holds, "as `versioned`: the invalidator's reads of the outbox are not reads of rows"),
        cell("hot-key", Naive, Finds(&["staleness"]), "the fill race, concentrated on the hot key"),
        cell("hot-key", Versioned, Holds, "a hot key is coalesced and fills stay ordered"),
        cell("hot-key", Durable, Holds, "as `versioned`"),
        cell("scan-gap", Naive, Finds(&["staleness"]), "deletes by pattern reach only what SCAN finds in Redis; a sibling held only in memcached keeps its old value, and fills race the deletes").buggified(),
        cell("scan-gap", Versioned, Finds(&["staleness"]), "pattern invalidation SCANs Redis only: a sibling held only in memcached (memcached has no SCAN) is never tombstoned, and the next L1 miss refills its old value (`durable`'s invalidator tombstones every sibling from the transaction's outbox rows)").buggified(),
        cell("scan-gap", Durable, Holds, "the transaction's outbox rows name every sibling listing: the invalidator tombstones the ones SCAN cannot see"),
        cell("random", Naive, Finds(&["staleness", "convergence"]), "random plans reach every way above of losing a delete"),
        cell("random", Versioned, Finds(&["staleness", "convergence"]), "random plans reach the faults above that lose tombstones (a partition, a pause, a failover); every fault is observed taking effect on every seed"),
        cell("random", Durable, Holds, "every fault above, at random times and overlaps: no plan leaves a read stale past Δ"),
    ]
}

/// The cell of (`scenario`, `strategy`), if the table states one.
pub fn cell(scenario: &str, strategy: Builtin) -> Option<Cell> {
    cells()
        .into_iter()
        .find(|c| c.scenario == scenario && c.strategy == strategy)
}

/// Markers around the generated sim-versus-real table in the README (`aside chaos compare`).
pub const COMPARE_BEGIN: &str =
    "<!-- generated by `aside chaos compare --readme README.md`: do not edit by hand -->";
pub const COMPARE_END: &str = "<!-- end of generated sim-versus-real table -->";

/// The simulator's column of the sim-versus-real table for `cell` (`holds`, or `finds ...`),
/// and whether it promises a failure.
pub fn promise(cell: &Cell) -> (String, bool) {
    match cell.expect {
        Expect::Holds => ("holds".to_string(), false),
        Expect::Finds(names) => (
            format!(
                "finds {}{}",
                if names.is_empty() {
                    "a failure".to_string()
                } else {
                    names.join(", ")
                },
                if cell.buggify { " (with BUGGIFY)" } else { "" }
            ),
            true,
        ),
    }
}

/// What a range of seeds showed for one cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub runs: u64,
    /// Failing seeds with their failing gating invariants, in seed order.
    pub failures: Vec<(u64, Vec<String>)>,
}

impl Tally {
    pub fn add(&mut self, seed: u64, failed: Vec<String>) {
        self.runs += 1;
        if !failed.is_empty() {
            self.failures.push((seed, failed));
        }
    }

    /// Runs that failed `invariant`.
    pub fn count(&self, invariant: &str) -> usize {
        self.failures
            .iter()
            .filter(|(_, f)| f.iter().any(|i| i == invariant))
            .count()
    }

    /// Every failing invariant with its run count, by name.
    pub fn by_invariant(&self) -> Vec<(String, usize)> {
        let mut names: Vec<String> = self
            .failures
            .iter()
            .flat_map(|(_, f)| f.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let c = self.count(&n);
                (n, c)
            })
            .collect()
    }

    /// `Err(why)` when this tally breaks the cell's promise.
    pub fn judge(&self, cell: &Cell) -> Result<(), String> {
        let what = format!("{} / {}", cell.scenario, cell.strategy.name());
        // A fault that never took effect is the harness's error: no cell may count it as a
        // finding.
        if let Some((seed, _)) = self
            .failures
            .iter()
            .find(|(_, f)| f.iter().any(|i| i == HARNESS_ERROR))
        {
            return Err(format!(
                "{what}: a fault did not take effect on seed {seed} ({HARNESS_ERROR} failed on {} of {} seeds): the nemesis, not the strategy, is broken",
                self.count(HARNESS_ERROR),
                self.runs
            ));
        }
        match cell.expect {
            Expect::Holds => match self.failures.first() {
                None => Ok(()),
                Some((seed, failed)) => Err(format!(
                    "{what} is promised to hold but failed on {} of {} seeds (first: seed {seed}, {})",
                    self.failures.len(),
                    self.runs,
                    failed.join(", ")
                )),
            },
            Expect::Finds(names) => self.judge_finds(&what, names),
        }
    }

    fn judge_finds(&self, what: &str, names: &[&str]) -> Result<(), String> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.count(n) == 0)
            .collect();
        if missing.is_empty() && !self.failures.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{what}: the harness no longer finds {} in {} seeds (found: {})",
            if missing.is_empty() {
                "any failure".to_string()
            } else {
                missing.join(", ")
            },
            self.runs,
            self.summary()
        ))
    }

    /// `holds on 20 of 20 seeds` or `7 of 20 seeds: convergence (3), staleness (7)`.
    pub fn summary(&self) -> String {
        if self.failures.is_empty() {
            return format!("holds on {} of {} seeds", self.runs, self.runs);
        }
        let invs: Vec<String> = self
            .by_invariant()
            .iter()
            .map(|(n, c)| format!("{n} ({c})"))
            .collect();
        format!(
            "fails on {} of {} seeds: {}",
            self.failures.len(),
            self.runs,
            invs.join(", ")
        )
    }
}

/// The README's results table: one row per scenario, one column per strategy, each cell the
/// tally and the reason. `about` gives a scenario's one-line description.
pub fn markdown(rows: &[(Cell, Tally)], about: impl Fn(&str) -> String) -> String {
    let strategies: Vec<Builtin> = {
        let mut s: Vec<Builtin> = rows.iter().map(|(c, _)| c.strategy).collect();
        s.dedup();
        Builtin::ALL
            .iter()
            .copied()
            .filter(|b| s.contains(b))
            .collect()
    };
    let mut scenarios: Vec<&str> = Vec::new();
    for (c, _) in rows {
        if !scenarios.contains(&c.scenario) {
            scenarios.push(c.scenario);
        }
    }
    let mut out = String::from("| scenario |");
    for s in &strategies {
        out.push_str(&format!(" `{}` |", s.name()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(strategies.len()));
    out.push('\n');
    for sc in scenarios {
        out.push_str(&format!("| `{sc}`: {} |", about(sc)));
        for st in &strategies {
            let text = rows
                .iter()
                .find(|(c, _)| c.scenario == sc && c.strategy == *st)
                .map(|(c, t)| {
                    let first = t
                        .failures
                        .first()
                        .map(|(s, _)| format!(" (first: seed {s})"))
                        .unwrap_or_default();
                    let with = if c.buggify { " with BUGGIFY" } else { "" };
                    format!("{}{with}{first}: {}", t.summary(), c.why)
                })
                .unwrap_or_else(|| "not in the table".into());
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }
    out
}

/// Markers around the generated table in the README.
pub const README_BEGIN: &str =
    "<!-- generated by `cargo sim table --readme README.md`: do not edit by hand -->";
pub const README_END: &str = "<!-- end of generated table -->";

/// `text` with the part between the results table's markers replaced by `table`; `Err` when
/// the markers are missing.
pub fn splice(text: &str, table: &str) -> Result<String, String> {
    splice_between(text, README_BEGIN, README_END, table)
}

/// `text` with the part between `begin` and `end` (each on its own line) replaced by `table`.
pub fn splice_between(text: &str, begin: &str, end: &str, table: &str) -> Result<String, String> {
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        return Err(format!(
            "no generated-table markers: put `{begin}` and `{end}` on their own lines where the table goes"
        ));
    };
    if e < b {
        return Err("the end-of-table marker comes before the begin marker".into());
    }
    Ok(format!("{}{begin}\n{table}{}", &text[..b], &text[e..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(fails: &[(u64, &[&str])], runs: u64) -> Tally {
        let mut t = Tally::default();
        for s in 1..=runs {
            let f = fails
                .iter()
                .find(|(seed, _)| *seed == s)
                .map(|(_, f)| f.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            t.add(s, f);
        }
        t
    }

    #[test]
    fn a_cell_that_holds_fails_its_promise_on_one_failing_seed() {
        let c = cell("fill-race", Builtin::Versioned).unwrap();
        assert!(tally(&[], 20).judge(&c).is_ok());
        let e = tally(&[(7, &["staleness"])], 20).judge(&c).unwrap_err();
        assert!(
            e.contains("promised to hold") && e.contains("seed 7"),
            "{e}"
        );
    }

    #[test]
    fn a_cell_that_finds_needs_every_named_invariant() {
        let c = cell("replica-lag", Builtin::Naive).unwrap();
        let all: &[&str] = &["staleness", "convergence", "read-your-writes"];
        assert!(tally(&[(3, all)], 20).judge(&c).is_ok());
        let e = tally(&[(3, &["staleness", "convergence"])], 20)
            .judge(&c)
            .unwrap_err();
        assert!(e.contains("no longer finds read-your-writes"), "{e}");
        let e = tally(&[], 20).judge(&c).unwrap_err();
        assert!(e.contains("no longer finds"), "{e}");
    }

    #[test]
    fn every_cell_names_a_known_scenario_once() {
        let names: Vec<&str> = chaos::scenario::catalog().iter().map(|s| s.name).collect();
        let cs = cells();
        for c in &cs {
            assert!(names.contains(&c.scenario), "{}", c.scenario);
        }
        for s in &names {
            for b in Builtin::ALL {
                assert_eq!(
                    cs.iter()
                        .filter(|c| c.scenario == *s && c.strategy == b)
                        .count(),
                    1,
                    "{s} / {}",
                    b.name()
                );
            }
        }
    }

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let text = format!("a\n{README_BEGIN}\nold\n{README_END}\nb\n");
        assert_eq!(
            splice(&text, "new\n").unwrap(),
            format!("a\n{README_BEGIN}\nnew\n{README_END}\nb\n")
        );
        assert!(splice("no markers", "x").unwrap_err().contains("markers"));
    }

    #[test]
    fn the_markdown_has_a_row_per_scenario_and_a_column_per_strategy() {
        let rows: Vec<(Cell, Tally)> = cells()
            .into_iter()
            .filter(|c| c.scenario == "fill-race")
            .map(|c| {
                let t = if c.expect == Expect::Holds {
                    tally(&[], 2)
                } else {
                    tally(&[(2, &["staleness"])], 2)
                };
                (c, t)
            })
            .collect();
        let md = markdown(&rows, |_| "no faults".into());
        assert_eq!(md.lines().count(), 3, "{md}");
        assert!(md.contains("| `fill-race`: no faults | fails on 1 of 2 seeds: staleness (1) (first: seed 2): a miss"));
        assert!(md.contains("holds on 2 of 2 seeds: a fill older"));
    }
}
