//! The sim-versus-real comparison as data: what the containers world showed for each cell
//! (`aside chaos compare` runs it), kept in `docs/results/compare.json`, and the table in
//! docs/results.md rendered from it beside what this commit's scenario files promise. The
//! containers' column is the only measured part; the simulator's column and whether the two
//! agree are derived at every render, so a promise that changes cannot leave a stale row.

use std::path::Path;

use aside::Builtin;
use serde::{Deserialize, Serialize};

use crate::expect::{self, COMPARE_BEGIN, COMPARE_END};

/// Where the committed comparison lives, from the repository's root.
pub const DATA: &str = "docs/results/compare.json";

/// Every cell the containers world ran, with how many runs each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub runs_per_cell: u64,
    pub cells: Vec<Measured>,
    /// Cells a spent time budget left unstarted (`aside chaos compare --budget-min`), as
    /// `scenario / strategy`: the nightly's summary names them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// One cell's container runs: `holds on 3 of 3 runs` or `fails on 1 of 3 runs: staleness (1)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    pub scenario: String,
    pub strategy: String,
    pub containers: String,
}

impl Comparison {
    /// Reads `path`; a missing file is an empty comparison.
    pub fn load(path: &Path) -> Result<Comparison, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{}: {e}: it is written by `aside chaos compare`; restore it from git",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Comparison::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).expect("plain data") + "\n";
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// This comparison with `cells` in place of the ones of the same (scenario, strategy), in
    /// the catalog's order.
    pub fn merged(&self, cells: Vec<Measured>, runs_per_cell: u64) -> Comparison {
        let mut all: Vec<Measured> = self
            .cells
            .iter()
            .filter(|old| {
                !cells
                    .iter()
                    .any(|c| c.scenario == old.scenario && c.strategy == old.strategy)
            })
            .cloned()
            .collect();
        all.extend(cells);
        let catalog = chaos::scenario::catalog();
        all.sort_by_key(|c| {
            let sc = catalog.iter().position(|s| s.name == c.scenario);
            let st = Builtin::ALL.iter().position(|b| b.name() == c.strategy);
            (sc.unwrap_or(usize::MAX), st)
        });
        Comparison {
            runs_per_cell,
            cells: all,
            skipped: Vec::new(),
        }
    }

    /// The rows with this commit's promises: (cell, its row, whether the worlds agree). A cell
    /// whose scenario or strategy no longer has a promise is an error naming it.
    pub fn rows(&self) -> Result<Vec<Row>, String> {
        self.cells
            .iter()
            .map(|m| {
                let strategy = Builtin::parse(&m.strategy)
                    .ok_or_else(|| format!("{DATA}: unknown strategy {:?}", m.strategy))?;
                let cell = expect::cell(&m.scenario, strategy).ok_or_else(|| {
                    format!(
                        "{DATA}: {} / {} has no promise in its scenario file: rerun `aside chaos compare --scenario {}` or drop the cell",
                        m.scenario, m.strategy, m.scenario
                    )
                })?;
                let (sim, sim_fails) = expect::promise(&cell);
                let agrees = m.containers.starts_with("fails") == sim_fails;
                Ok(Row {
                    line: format!(
                        "| `{}` | {} | {sim} | {} | {} |",
                        m.scenario,
                        m.strategy,
                        m.containers,
                        if agrees { "yes" } else { "**no**" }
                    ),
                    agrees,
                })
            })
            .collect()
    }

    /// The table docs/results.md shows between the compare markers, with its tally.
    pub fn markdown(&self) -> Result<String, String> {
        let rows = self.rows()?;
        let mut md = String::from(
            "| scenario | strategy | simulator (seeds 1-20) | containers | agree |\n|---|---|---|---|---|\n",
        );
        for r in &rows {
            md.push_str(&r.line);
            md.push('\n');
        }
        md.push_str(&format!(
            "\n{} cells, {} disagreeing; {} container runs per cell.\n",
            rows.len(),
            rows.iter().filter(|r| !r.agrees).count(),
            self.runs_per_cell
        ));
        Ok(md)
    }

    /// `text` with its compare table rendered from this comparison.
    pub fn splice(&self, text: &str) -> Result<String, String> {
        expect::splice_between(text, COMPARE_BEGIN, COMPARE_END, &self.markdown()?)
    }
}

/// One rendered row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: String,
    pub agrees: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(sc: &str, st: &str, containers: &str) -> Measured {
        Measured {
            scenario: sc.into(),
            strategy: st.into(),
            containers: containers.into(),
        }
    }

    #[test]
    fn a_row_agrees_when_both_worlds_fail_or_both_hold() {
        let c = Comparison {
            runs_per_cell: 3,
            cells: vec![
                cell("fill-race", "naive", "fails on 1 of 3 runs: staleness (1)"),
                cell(
                    "fill-race",
                    "versioned",
                    "fails on 1 of 3 runs: staleness (1)",
                ),
                cell("fill-race", "durable", "holds on 3 of 3 runs"),
            ],
            skipped: Vec::new(),
        };
        let rows = c.rows().unwrap();
        assert_eq!(
            rows.iter().map(|r| r.agrees).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(
            rows[1].line,
            "| `fill-race` | versioned | holds | fails on 1 of 3 runs: staleness (1) | **no** |"
        );
        assert!(c
            .markdown()
            .unwrap()
            .contains("3 cells, 1 disagreeing; 3 container runs per cell."));
    }

    #[test]
    fn a_merge_replaces_the_cells_it_redid_and_keeps_the_catalogs_order() {
        let old = Comparison {
            runs_per_cell: 3,
            cells: vec![
                cell("fill-race", "naive", "holds on 3 of 3 runs"),
                cell("redis-failover", "naive", "holds on 3 of 3 runs"),
            ],
            skipped: Vec::new(),
        };
        let new = old.merged(
            vec![
                cell(
                    "redis-failover",
                    "naive",
                    "fails on 3 of 3 runs: staleness (3)",
                ),
                cell("fill-race", "durable", "holds on 3 of 3 runs"),
            ],
            3,
        );
        let order: Vec<(&str, &str)> = new
            .cells
            .iter()
            .map(|c| (c.scenario.as_str(), c.strategy.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("fill-race", "naive"),
                ("fill-race", "durable"),
                ("redis-failover", "naive")
            ]
        );
        assert!(new.cells[2].containers.starts_with("fails"));
    }

    #[test]
    fn a_cell_without_a_promise_is_named() {
        let c = Comparison {
            runs_per_cell: 1,
            cells: vec![cell("nope", "naive", "holds on 1 of 1 runs")],
            skipped: Vec::new(),
        };
        assert!(c
            .rows()
            .unwrap_err()
            .contains("nope / naive has no promise"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        assert_eq!(Comparison::load(&f).unwrap(), Comparison::default());
        std::fs::write(&f, "{\"runs_per_cell\": 1, \"cels\": []}").unwrap();
        assert!(Comparison::load(&f).unwrap_err().contains("unknown field"));
    }
}
