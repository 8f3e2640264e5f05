//! A history at a glance: reads, stale reads, database reads and failed reads per slice of time,
//! with the faults above them, so a person sees when staleness began and what was going on.

use serde_json::{json, Value};

use crate::checkers::fmt_ns;
use crate::checkers::staleness::staleness_of;
use crate::index::{Index, ReadRec};

/// Columns of the timeline.
pub const COLUMNS: usize = 60;

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub start_ns: u64,
    pub end_ns: u64,
    pub reads: Vec<u64>,
    pub stale: Vec<u64>,
    pub db: Vec<u64>,
    pub failed: Vec<u64>,
    /// Per fault: its description and, per column, whether it was active.
    pub faults: Vec<(String, Vec<bool>)>,
}

impl Timeline {
    pub fn new(idx: &Index) -> Timeline {
        let (start_ns, end_ns) = idx.span_ns;
        let mut t = Timeline {
            start_ns,
            end_ns,
            reads: vec![0; COLUMNS],
            stale: vec![0; COLUMNS],
            db: vec![0; COLUMNS],
            failed: vec![0; COLUMNS],
            faults: Vec::new(),
        };
        for f in &idx.faults {
            let cols = (0..COLUMNS).map(|c| {
                let (a, b) = t.bounds(c);
                f.start_ns <= b && f.end_ns > a
            });
            t.faults.push((f.fault.clone(), cols.collect()));
        }
        t
    }

    fn width(&self) -> u64 {
        (self.end_ns.saturating_sub(self.start_ns) / COLUMNS as u64).max(1)
    }

    /// The time a column covers.
    fn bounds(&self, c: usize) -> (u64, u64) {
        let a = self.start_ns + c as u64 * self.width();
        (a, a + self.width() - 1)
    }

    fn column(&self, t: u64) -> usize {
        ((t.saturating_sub(self.start_ns) / self.width()) as usize).min(COLUMNS - 1)
    }

    pub fn observe(&mut self, idx: &Index, r: &ReadRec) {
        let c = self.column(r.invoke_ns);
        self.reads[c] += 1;
        if !r.ok() {
            self.failed[c] += 1;
            return;
        }
        if r.source.is_some_and(|s| s.is_db()) {
            self.db[c] += 1;
        }
        if staleness_of(idx, r).is_some() {
            self.stale[c] += 1;
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "start_ns": self.start_ns, "end_ns": self.end_ns, "columns": COLUMNS,
            "reads": self.reads, "stale": self.stale, "db": self.db, "failed": self.failed,
            "faults": self.faults.iter().map(|(f, cols)| json!({"fault": f, "active": cols})).collect::<Vec<_>>(),
        })
    }

    /// Sparklines, one row per series, each scaled to its own maximum (shown at the right).
    pub fn render(&self) -> String {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let spark = |v: &[u64]| -> String {
            let max = v.iter().copied().max().unwrap_or(0);
            v.iter()
                .map(|&x| match x {
                    0 => ' ',
                    _ => BARS[((x * 7).div_ceil(max.max(1)) as usize).min(7)],
                })
                .collect()
        };
        let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
        let mut out = format!(
            "  timeline {} .. {} ({} per column)\n",
            fmt_ns(self.start_ns),
            fmt_ns(self.end_ns),
            fmt_ns(self.width())
        );
        for (f, cols) in &self.faults {
            let row: String = cols.iter().map(|&a| if a { '█' } else { '·' }).collect();
            out.push_str(&format!("    {:<9}|{row}| {f}\n", "fault"));
        }
        for (name, v) in [
            ("reads", &self.reads),
            ("stale", &self.stale),
            ("db reads", &self.db),
            ("failed", &self.failed),
        ] {
            out.push_str(&format!(
                "    {name:<9}|{}| max {}/column\n",
                spark(v),
                max(v)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::history::{Outcome, Source};
    use crate::testkit::{H, MS};

    #[test]
    fn stale_reads_and_faults_land_in_their_columns() {
        let mut h = H::new(json!({"staleness_ns_max": MS}));
        h.write(1, "k", (0, MS), 1);
        h.fault(300 * MS, true, "redis-master");
        h.fault(400 * MS, false, "redis-master");
        for i in 0..10 {
            h.read(2, "k", (500 * MS + i, 500 * MS + i + 1), 0, Source::L1);
        }
        h.read_failed(2, "k", (599 * MS, 600 * MS), Outcome::Fail);
        let r = h.check();
        let t = r.timeline.as_ref().unwrap();
        assert_eq!((t.start_ns, t.end_ns), (0, 600 * MS));
        assert_eq!(t.stale.iter().sum::<u64>(), 10);
        assert_eq!(t.stale[50], 10, "500 ms of 600 ms is column 50 of 60");
        assert_eq!(t.failed[59], 1);
        assert!(t.faults[0].1[30] && t.faults[0].1[39] && !t.faults[0].1[41]);
        let text = t.render();
        assert!(text.contains("stale") && text.contains('█'), "{text}");
    }
}
