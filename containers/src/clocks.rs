//! App nodes' wall clocks under a `clock` fault ([`aside::wall::WallClock`]). App nodes in this
//! process are skewed through their handles; app nodes in containers of their own follow a file
//! in the run directory ([`follow`]) and report their clock's offset in one of their own, which
//! is what the nemesis observes.
//!
//! The file is `clock-N`: `SEQ JUMP_MS RATE_PERMILLE` (a skew) or `SEQ true` (true time). App
//! node N answers in `clock-seen-N`: `SEQ OFFSET_MS`, its clock's offset from true time, written
//! again every [`FOLLOW_EVERY`] while a skew is on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aside::wall::WallClock;

use crate::rings::write_atomic;

/// How often an app node looks at its `clock` file.
const FOLLOW_EVERY: Duration = Duration::from_millis(20);

/// Every app node's clock, as the nemesis holds them.
pub enum Clocks {
    /// The handles of the app nodes in this process.
    InProcess(Vec<WallClock>),
    /// App nodes in containers, following `dir/clock-N`; the last change each was sent.
    Files { dir: PathBuf, seqs: Vec<u64> },
}

impl Clocks {
    /// App node `app`'s clock jumps `jump_ms` and runs at `rate_permille` / 1000 of true speed
    /// from now on (`None`: true time again).
    pub fn skew(&mut self, app: usize, skew: Option<(i32, u16)>) -> Result<(), String> {
        match self {
            Clocks::InProcess(clocks) => {
                let c = clocks
                    .get(app)
                    .ok_or_else(|| format!("no app-{} in this process", app + 1))?;
                match skew {
                    Some((jump_ms, rate_permille)) => {
                        c.skew(i64::from(jump_ms), u32::from(rate_permille))
                    }
                    None => c.true_time(),
                }
                Ok(())
            }
            Clocks::Files { dir, seqs } => {
                if seqs.len() <= app {
                    seqs.resize(app + 1, 0);
                }
                let seq = &mut seqs[app];
                *seq += 1;
                let text = match skew {
                    Some((jump_ms, rate_permille)) => format!("{seq} {jump_ms} {rate_permille}"),
                    None => format!("{seq} true"),
                };
                write_atomic(&dir.join(format!("clock-{}", app + 1)), &text)
            }
        }
    }

    /// How many app nodes run in this process (0 with app nodes in containers).
    pub fn in_process(&self) -> usize {
        match self {
            Clocks::InProcess(clocks) => clocks.len(),
            Clocks::Files { .. } => 0,
        }
    }

    /// How far app node `app`'s clock reads from true time, in ms, as it last said (an app node
    /// in a container: only once it has applied the latest change).
    pub fn offset_ms(&self, app: usize) -> Option<i64> {
        match self {
            Clocks::InProcess(clocks) => clocks.get(app).map(WallClock::offset_ms),
            Clocks::Files { dir, seqs } => {
                let text = std::fs::read_to_string(seen_file(dir, app)).ok()?;
                let (said, offset) = text.trim().split_once(' ')?;
                (said.parse::<u64>().ok()? == *seqs.get(app)?).then_some(())?;
                offset.parse().ok()
            }
        }
    }
}

fn seen_file(dir: &Path, app: usize) -> PathBuf {
    dir.join(format!("clock-seen-{}", app + 1))
}

/// The app node's side: applies each change of `dir/clock-N` to `clock` and reports the offset,
/// until the task is dropped.
pub async fn follow(dir: PathBuf, app: usize, clock: WallClock) {
    let file = dir.join(format!("clock-{}", app + 1));
    let (mut done, mut skewed) = (0u64, false);
    loop {
        let change = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| parse(&t))
            .filter(|c| c.0 > done);
        if let Some((seq, skew)) = change {
            match skew {
                Some((jump_ms, rate_permille)) => clock.skew(jump_ms, rate_permille),
                None => clock.true_time(),
            }
            (done, skewed) = (seq, skew.is_some());
        }
        if change.is_some() || skewed {
            let seen = format!("{done} {}", clock.offset_ms());
            if let Err(e) = write_atomic(&seen_file(&dir, app), &seen) {
                eprintln!("app-{}: {e}", app + 1);
            }
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// `SEQ JUMP_MS RATE_PERMILLE` or `SEQ true`.
fn parse(text: &str) -> Option<(u64, Option<(i64, u32)>)> {
    let mut words = text.split_whitespace();
    let seq = words.next()?.parse().ok()?;
    let first = words.next()?;
    if first == "true" {
        return Some((seq, None));
    }
    Some((
        seq,
        Some((first.parse().ok()?, words.next()?.parse().ok()?)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_app_node_following_its_file_skews_its_clock_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = WallClock::default();
        let follower = tokio::spawn(follow(dir.path().to_path_buf(), 0, clock.clone()));
        let mut clocks = Clocks::Files {
            dir: dir.path().to_path_buf(),
            seqs: Vec::new(),
        };
        assert_eq!(clocks.offset_ms(0), None, "nothing said yet");
        clocks.skew(0, Some((-30_000, 1000))).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let seen = loop {
            if let Some(off) = clocks.offset_ms(0) {
                break off;
            }
            assert!(tokio::time::Instant::now() < deadline, "no report");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!((-30_010..=-29_990).contains(&seen), "{seen}");
        assert!((-30_010..=-29_990).contains(&clock.offset_ms()));
        clocks.skew(0, None).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while clocks.offset_ms(0) != Some(0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "true time never reported"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(clock.offset_ms(), 0);
        follower.abort();
    }

    #[test]
    fn a_garbled_clock_file_changes_nothing() {
        assert_eq!(parse("3 -500 1000"), Some((3, Some((-500, 1000)))));
        assert_eq!(parse("4 true\n"), Some((4, None)));
        for bad in ["", "x true", "5", "5 12", "5 twelve 1000"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
