//! A fast path for the lines that make up almost all of a history: flat `op` and `probe` objects.
//!
//! It scans one JSON object without building a tree and gives up (returns `None`) at anything it
//! does not handle exactly like serde_json would: escapes in strings, floats, nested values,
//! duplicate fields, other line types. The caller then parses the line with serde_json, so the
//! fast path changes speed, never answers; a property test holds the two to the same output.

use std::borrow::Cow;

use super::raw::{build_op, build_probe, RawFields};
use super::Line;
use crate::error::Problem;

struct Scan<'a> {
    /// The line, checked to be UTF-8 once: a string is a slice of it, not checked again.
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

enum Val<'a> {
    Str(&'a str),
    Int(i128),
    Null,
    Bool,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..start + len)
    }

    fn value(&mut self) -> Option<Val<'a>> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.string().map(Val::Str),
            b'n' => self.word(b"null").map(|_| Val::Null),
            b't' => self.word(b"true").map(|_| Val::Bool),
            b'f' => self.word(b"false").map(|_| Val::Bool),
            b'-' | b'0'..=b'9' => {
                let neg = self.b[self.i] == b'-';
                self.i += usize::from(neg);
                let start = self.i;
                while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let digits = &self.b[start..self.i];
                // Leading zeros, floats and exponents: leave them to serde_json.
                if digits.is_empty() || digits.len() > 20 || (digits.len() > 1 && digits[0] == b'0')
                {
                    return None;
                }
                if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let n = digits
                    .iter()
                    .fold(0i128, |n, d| n * 10 + i128::from(d - b'0'));
                // serde_json reads `-0` as the float -0.0, which no integer field takes.
                if neg && n == 0 {
                    return None;
                }
                Some(Val::Int(if neg { -n } else { n }))
            }
            _ => None,
        }
    }

    fn word(&mut self, w: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(w).then(|| self.i += w.len())
    }
}

fn u64_of(v: &Val<'_>) -> Option<Option<u64>> {
    match v {
        Val::Int(n) => u64::try_from(*n).ok().map(Some),
        _ => None,
    }
}

/// `None`: not handled here, parse with serde_json. `Some`: exactly what serde_json would give.
pub fn parse(b: &[u8]) -> Option<Result<Line<'_>, Problem>> {
    let text = std::str::from_utf8(b).ok()?;
    let mut s = Scan { text, b, i: 0 };
    s.eat(b'{')?;
    let mut f = RawFields::default();
    let mut seen = 0u32;
    let mut ty = None;
    if s.eat(b'}').is_none() {
        loop {
            let key = s.string()?;
            s.eat(b':')?;
            let v = s.value()?;
            let bit = match key {
                "type" => {
                    let Val::Str(t) = v else { return None };
                    ty = Some(t);
                    0
                }
                "id" => set(&mut f.id, u64_of(&v)?, 1)?,
                "client" => set(&mut f.client, u64_of(&v)?, 2)?,
                "key" => set_str(&mut f.key, &v, 3)?,
                "f" => set_str(&mut f.f, &v, 4)?,
                "invoke_ns" => set(&mut f.invoke_ns, u64_of(&v)?, 5)?,
                "complete_ns" => set(&mut f.complete_ns, u64_of(&v)?, 6)?,
                "outcome" => set_str(&mut f.outcome, &v, 7)?,
                "version" => {
                    f.version = Some(match v {
                        Val::Null => None,
                        Val::Int(n) => Some(i64::try_from(n).ok()?),
                        _ => return None,
                    });
                    8
                }
                "source" => set_str(&mut f.source, &v, 9)?,
                "payload" => set_str(&mut f.payload, &v, 10)?,
                "at_ns" => set(&mut f.at_ns, u64_of(&v)?, 11)?,
                "tier" => set_str(&mut f.tier, &v, 12)?,
                // Fields of other line types, or unknown ones: a line with another type's field
                // takes the slow path (which checks that field's type as serde_json does),
                // unknown fields are ignored as serde_json ignores them.
                "format" | "world" | "scenario" | "strategy" | "seed" | "commit" | "config"
                | "action" | "fault" | "effect" | "node" | "start_ns" | "server" | "role"
                | "shard" | "goal" | "count" | "undone" => return None,
                _ => 31,
            };
            if bit != 31 {
                if seen & (1 << bit) != 0 {
                    return None; // duplicate field: serde_json's error, not ours
                }
                seen |= 1 << bit;
            }
            if s.eat(b',').is_none() {
                s.eat(b'}')?;
                break;
            }
        }
    }
    s.ws();
    if s.i != b.len() {
        return None;
    }
    match ty? {
        "op" => Some(build_op(f).map(Line::Op)),
        "probe" => Some(build_probe(f).map(Line::Probe)),
        _ => None,
    }
}

fn set<T>(slot: &mut Option<T>, v: Option<T>, bit: u32) -> Option<u32> {
    *slot = Some(v?);
    Some(bit)
}

fn set_str<'a>(slot: &mut Option<Cow<'a, str>>, v: &Val<'a>, bit: u32) -> Option<u32> {
    let Val::Str(s) = v else { return None };
    *slot = Some(Cow::Borrowed(s));
    Some(bit)
}
