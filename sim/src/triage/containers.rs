//! The containers world's cells of a night against the recorded ones (`docs/results/compare.json`).

use super::News;
use crate::compare::{Comparison, Measured};

/// The containers cells whose verdict tonight (holds or fails) the recorded runs rule out; a
/// cell nothing records is new, and reported so. A cell recorded as failing on some runs and
/// not others (`fails on 1 of 3 runs`) is a race real servers lose now and then: tonight's
/// holding or failing is no news there (fill-race / naive held 3 of 3 on a night whose record
/// says 1 of 3).
pub fn containers_news(recorded: &Comparison, tonight: &Comparison) -> Vec<News> {
    let fails = |m: &Measured| m.containers.starts_with("fails");
    let sometimes = |m: &Measured| {
        let Some(rest) = m.containers.strip_prefix("fails on ") else {
            return false;
        };
        let mut words = rest.split_whitespace();
        let (k, of, n) = (words.next(), words.next(), words.next());
        of == Some("of") && k.zip(n).is_some_and(|(k, n)| k != n.trim_end_matches(':'))
    };
    tonight
        .cells
        .iter()
        .filter_map(|t| {
            let cell = format!("{} / {}", t.scenario, t.strategy);
            match recorded
                .cells
                .iter()
                .find(|r| r.scenario == t.scenario && r.strategy == t.strategy)
            {
                None => Some(News::NewCell(format!("containers {cell}"))),
                Some(r) if !sometimes(r) && fails(r) != fails(t) => Some(News::Containers {
                    cell,
                    recorded: r.containers.clone(),
                    tonight: t.containers.clone(),
                }),
                Some(_) => None,
            }
        })
        .collect()
}
