//! Seed logs: the history of a failing run, header first, saved so that `cargo sim repro FILE`
//! can rerun exactly that run. Reading one checks that it is whole and from this commit.

use std::path::Path;

use invariants::history::{parse_line, Line};

/// The run a seed log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub scenario: String,
    pub strategy: String,
    pub seed: u64,
    pub commit: String,
    /// The header's config: the workload, plan and bounds the run had.
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// The one command that reruns a seed: `cargo sim --scenario NAME` (or `--scenario-file PATH`
/// for a scenario given as a file's path, `Scenario::arg`), the strategy, the seed, BUGGIFY.
pub fn replay_command(
    scenario: &str,
    strategy: &str,
    seed: u64,
    buggify: bool,
    mutant: Option<aside::mutant::Mutant>,
) -> String {
    let mut flag = if buggify { " --buggify" } else { "" }.to_string();
    if let Some(m) = mutant {
        flag.push_str(&format!(" --mutant {m}"));
    }
    let which = if scenario.ends_with(".toml") {
        "--scenario-file"
    } else {
        "--scenario"
    };
    format!("cargo sim {which} {scenario} --strategy {strategy} --seed {seed}{flag}")
}

/// FNV-1a 64 of the history bytes: same run, same hash.
pub fn trace_hash(history: &[u8]) -> String {
    format!("{:016x}", invariants::payload::fnv1a(history))
}

/// Reads a seed log's header and checks that the whole file parses (a truncated log is refused:
/// its verdict would not be the run's).
pub fn read(path: &Path) -> Result<(Run, Vec<u8>), String> {
    let name = path.display();
    if path.is_dir() {
        return Err(format!(
            "{name} is a directory: pass a seed log file (target/aside/failures/*.jsonl)"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read seed log {name}: {e}"))?;
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let header = match parse_line(first, false) {
        Ok(Line::Header(h)) => h,
        Ok(_) => {
            return Err(format!(
                "{name}:1: not a seed log: the first line must be the history header"
            ))
        }
        Err(e) => return Err(format!("{name}:1: not a seed log: {e}")),
    };
    if header.world != "sim" {
        return Err(format!(
            "{name}: a {:?} history, not a simulator seed log: only sim runs can be replayed",
            header.world
        ));
    }
    invariants::check_reader(&name.to_string(), bytes.as_slice(), &[])
        .map_err(|e| format!("{e}"))?;
    Ok((
        Run {
            scenario: header.scenario,
            strategy: header.strategy,
            seed: header.seed,
            commit: header.commit,
            config: header.config,
        },
        bytes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_whole_sim_log() {
        let dir = std::env::temp_dir().join(format!("aside-seedlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let header = r#"{"type":"header","format":1,"world":"sim","scenario":"fill-race","strategy":"naive","seed":7,"commit":"abc","config":{}}"#;
        let op = r#"{"type":"op","id":1,"client":1,"key":"k","f":"read","invoke_ns":1,"complete_ns":2,"outcome":"ok","version":0,"source":"l1"}"#;
        let good = dir.join("good.jsonl");
        std::fs::write(&good, format!("{header}\n{op}\n")).unwrap();
        let (run, _) = read(&good).unwrap();
        assert_eq!(
            (run.scenario.as_str(), run.seed, run.commit.as_str()),
            ("fill-race", 7, "abc")
        );
        let cut = dir.join("cut.jsonl");
        std::fs::write(&cut, format!("{header}\n{}", &op[..30])).unwrap();
        assert!(read(&cut).unwrap_err().contains("truncated"));
        let other = dir.join("other.jsonl");
        std::fs::write(&other, header.replace("\"sim\"", "\"containers\"")).unwrap();
        assert!(read(&other)
            .unwrap_err()
            .contains("not a simulator seed log"));
        assert!(read(&dir).unwrap_err().contains("is a directory"));
        assert!(read(&dir.join("missing"))
            .unwrap_err()
            .contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trace_hash_is_stable() {
        assert_eq!(trace_hash(b""), "cbf29ce484222325");
        assert_ne!(trace_hash(b"a"), trace_hash(b"b"));
    }
}
