//! Runs many: one simulation per core at a time, results in input order, a progress bar that
//! stays on the terminal and is replaced by plain lines when output goes to a file.

use indicatif::{ProgressBar, ProgressStyle};

/// How many runs go at once: one per core.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over `items` on every core, results in `items`' order. Each run builds its own madsim
/// runtime on the worker's thread, so runs never share a simulation; what madsim's statics keep
/// between runs on one thread does not reach a run's history (the determinism test runs every
/// seed twice in one process and compares).
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = workers().min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *slots[i].lock().expect("a worker panicked") = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("a worker panicked")
                .expect("every item ran")
        })
        .collect()
}

/// A campaign's progress on stderr: a bar on a terminal; when stderr goes to a file or a CI log
/// (where a bar draws nothing), a plain line at every tenth of the runs.
pub struct Progress {
    bar: ProgressBar,
    plain: bool,
    total: u64,
    done: std::sync::atomic::AtomicU64,
}

impl Progress {
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if !self.plain {
            return;
        }
        let before = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let now = before + n;
        let step = (self.total / 10).max(1);
        if now / step != before / step || now == self.total {
            eprintln!(
                "  {now}/{} runs, {:.0} s",
                self.total,
                self.bar.elapsed().as_secs_f64()
            );
        }
    }

    /// Runs `f` with the bar out of the way (a line printed mid-campaign).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

pub fn progress(total: u64) -> Progress {
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if plain {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs  {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    Progress {
        bar,
        plain,
        total,
        done: std::sync::atomic::AtomicU64::new(0),
    }
}
