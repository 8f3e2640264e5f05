//! Why a history could not be checked. Every variant names the line and says what to do; the CLI
//! prints `FILE:LINE: message` on one line and exits 2.

use thiserror::Error;

/// A history that cannot be checked. `line` is 1-based; 0 means the whole file.
#[derive(Debug, Error)]
#[error("{}{problem}", location(file, *line))]
pub struct HistoryError {
    pub file: String,
    pub line: u64,
    pub problem: Problem,
}

/// What is wrong with the history, independent of where it is.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Problem {
    #[error("cannot read: {0}")]
    Io(String),
    #[error("is a directory, not a history file: pass the .jsonl file inside it")]
    Directory,
    #[error("the file is empty: a history starts with a header line (docs/history-format.md)")]
    Empty,
    #[error("truncated line: the file ends in the middle of a record (was the writer killed?); drop the last line or rerun")]
    Truncated,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("unknown line type {0:?}: expected header, op, fault, probe, cache, goal or role")]
    UnknownType(String),
    #[error("{line_type} line is missing field {field:?}")]
    MissingField {
        line_type: &'static str,
        field: &'static str,
    },
    #[error("field {field:?} has bad value {value}: {expected}")]
    BadField {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("complete_ns {complete_ns} is before invoke_ns {invoke_ns}: an op cannot finish before it starts")]
    CompleteBeforeInvoke { invoke_ns: u64, complete_ns: u64 },
    #[error("duplicate op id {0}: every op needs its own id")]
    DuplicateOpId(u64),
    #[error("version {0} is negative: versions start at 0 (the initial row)")]
    NegativeVersion(i64),
    #[error("ok {0} has no version: an acknowledged read or write must say which version it saw or made")]
    OkWithoutVersion(&'static str),
    #[error("no header line: the first line must be {{\"type\":\"header\",\"format\":1,...}}")]
    NoHeader,
    #[error("second header line (the first is line {0}): one history per file")]
    DuplicateHeader(u64),
    #[error("unsupported history format {0}: this aside reads format 1")]
    UnsupportedFormat(u64),
    #[error("bound {key} {why}")]
    BadConfig { key: String, why: String },
    #[error("cache action ends at {at_ns} ns before it starts at {start_ns} ns: start_ns must not be after at_ns")]
    ActBeforeStart { start_ns: u64, at_ns: u64 },
    #[error("fault {fault} stops at {at_ns} ns but was never started before then")]
    StopWithoutStart { fault: String, at_ns: u64 },
    #[error("too many distinct keys (more than {0}): the checker indexes keys with 32 bits")]
    TooManyKeys(u64),
}

fn location(file: &str, line: u64) -> String {
    if line == 0 {
        format!("{file}: ")
    } else {
        format!("{file}:{line}: ")
    }
}

impl HistoryError {
    pub fn new(file: impl Into<String>, line: u64, problem: Problem) -> Self {
        HistoryError {
            file: file.into(),
            line,
            problem,
        }
    }
}
