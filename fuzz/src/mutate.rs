//! Inputs made from a corpus: one to eight mutations stacked on a corpus entry, each chosen from
//! the ways outside input goes wrong (a flipped bit, a byte that means something to a parser, a
//! cut, a repeat, a splice of two files, a number out of range, a line doubled or dropped).

use invariants::gen::SplitMix;
pub use invariants::payload::fnv1a;

/// Inputs longer than this are cut: the parsers' limits are tested by their own tests.
pub const INPUT_BYTES_MAX: usize = 64 * 1024;

/// The generator: `invariants`' SplitMix64, with a `usize` range.
pub struct Rng(SplitMix);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

/// Bytes that mean something to one of the parsers.
const INTERESTING: &[u8] = b"\0\n\r \t|\"{}[],:=\\#'~.-+0123456789eE\x7f\x80\xc3\xff";

/// Tokens that break number and string handling.
const TOKENS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "1e308",
    "NaN",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "\u{feff}",
    "\u{10ffff}",
    "\\u0000",
    "\r\n",
    "AS1|",
    "AS1|v|1|0|00000000|r|",
];

/// One mutant of a random corpus entry (`corpus` not empty).
pub fn mutant(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut b = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(8) {
        mutate(rng, &mut b, corpus);
    }
    b.truncate(INPUT_BYTES_MAX);
    b
}

fn mutate(rng: &mut Rng, b: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let at = |rng: &mut Rng, b: &Vec<u8>| rng.below(b.len() + 1);
    match rng.below(10) {
        0 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
        }
        1 if !b.is_empty() => {
            let i = rng.below(b.len());
            b[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let i = at(rng, b);
            let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
            b.splice(i..i, t.iter().copied());
        }
        3 if !b.is_empty() => {
            // Cut a range out.
            let i = rng.below(b.len());
            let n = 1 + rng.below((b.len() - i).min(64));
            b.drain(i..i + n);
        }
        4 if !b.is_empty() => {
            // Repeat a range.
            let i = rng.below(b.len());
            let n = 1 + rng.below((b.len() - i).min(256));
            let piece: Vec<u8> = b[i..i + n].to_vec();
            let j = at(rng, b);
            b.splice(j..j, piece);
        }
        5 => {
            // Splice: this input's head, another's tail.
            let other = &corpus[rng.below(corpus.len())];
            let i = at(rng, b);
            let j = rng.below(other.len() + 1);
            b.truncate(i);
            b.extend_from_slice(&other[j..]);
        }
        6 => {
            b.truncate(at(rng, b));
        }
        7 => {
            // A run of digits replaced by a token (numbers out of range, not numbers).
            if let Some(i) = (0..b.len()).find(|&i| b[i].is_ascii_digit() && rng.below(8) == 0) {
                let end = (i..b.len())
                    .find(|&j| !b[j].is_ascii_digit())
                    .unwrap_or(b.len());
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(i..end, t.iter().copied());
            }
        }
        8 => {
            // A line doubled or dropped.
            let lines: Vec<&[u8]> = b.split(|&x| x == b'\n').collect();
            let k = rng.below(lines.len());
            let double = rng.below(2) == 0;
            let mut out = Vec::with_capacity(b.len() + 64);
            for (n, l) in lines.iter().enumerate() {
                if n == k && !double {
                    continue;
                }
                let times = if n == k { 2 } else { 1 };
                for _ in 0..times {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                }
            }
            *b = out;
        }
        _ => {
            let i = at(rng, b);
            let n = 1 + rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            b.splice(i..i, junk);
        }
    }
}
