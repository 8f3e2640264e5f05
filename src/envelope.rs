//! The value stored in a cache tier: a versioned envelope, or a tombstone.
//!
//! Text header, binary payload: `AS1|v|<version>|<fresh_until_ms>|<crc32 hex>|<encoding>|<payload>`
//! or `AS1|t|<version>|0|00000000|r|`. The encoding says how the payload's bytes are to be read
//! (`r`: raw, as the database returned them); a reader that does not know it treats the entry as
//! corrupt, so a future encoding can roll out without old readers misreading it. Text so that a
//! Lua script can read the version with one
//! `string.match`, and an operator can read it in `redis-cli`. The checksum covers the key, the
//! version and the payload, so a corrupt value or one stored under the wrong key is detected
//! (and then treated as a miss, deleted and counted, never returned).

use crc32fast::Hasher;

const MAGIC: &[u8] = b"AS1|";

/// What a tier holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Value {
        version: u64,
        fresh_until_ms: u64,
        payload: Vec<u8>,
    },
    /// The key was invalidated at `version`: fills of older versions must be refused.
    Tombstone { version: u64 },
    /// The database had no row for the key when it was read at `version` (0: before any
    /// write): a read served from it answers "no such row" (negative caching).
    Absent { version: u64 },
}

impl Entry {
    pub fn version(&self) -> u64 {
        match self {
            Entry::Value { version, .. }
            | Entry::Tombstone { version }
            | Entry::Absent { version } => *version,
        }
    }
}

/// What a versioned update brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Value,
    Tombstone,
    Absent,
}

impl Entry {
    pub fn kind(&self) -> Kind {
        match self {
            Entry::Value { .. } => Kind::Value,
            Entry::Tombstone { .. } => Kind::Tombstone,
            Entry::Absent { .. } => Kind::Absent,
        }
    }
}

/// The generation a group's generation key's entry names, read from the header alone as the
/// Redis script `get_in_generation` reads it (`^AS1|(%a)|(%d+)|`): a value's version, 0 for "no
/// such row"; none for a tombstone or anything else. The caller still decodes the entry (and
/// its checksum) before trusting the number.
pub fn generation_named(raw: &[u8]) -> Option<u64> {
    let rest = raw.strip_prefix(MAGIC)?;
    let (&kind, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b"|")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b'|') {
        return None;
    }
    let v: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    match kind {
        b'v' => Some(v),
        b'a' => Some(0),
        _ => None,
    }
}

/// Whether a reader at `now_ms` cannot serve this entry, as the Redis script `get_or_lease`
/// reads its header (`^AS1|(%a)|%d+|(%d+)|`): a tombstone, or a value whose freshness ended more
/// than `stale_ms` ago (the reader's stale-while-revalidate window): a reason, like no entry at
/// all, to take the lease. Anything else, "no such row" and what is not an envelope included,
/// is the decoder's to judge.
pub fn unusable(raw: &[u8], now_ms: u64, stale_ms: u64) -> bool {
    let Some(rest) = raw.strip_prefix(MAGIC) else {
        return false;
    };
    let Some((&kind, rest)) = rest.split_first() else {
        return false;
    };
    let field = |rest: &[u8]| -> Option<(u64, usize)> {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || rest.get(digits) != Some(&b'|') {
            return None;
        }
        let n = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        Some((n, digits + 1))
    };
    let header = rest.strip_prefix(b"|").and_then(|rest| {
        let (_, used) = field(rest)?;
        field(&rest[used..]).map(|(fresh_until_ms, _)| fresh_until_ms)
    });
    match (kind, header) {
        (b't', Some(_)) => true,
        (b'v', Some(fresh_until_ms)) => {
            fresh_until_ms != 0 && fresh_until_ms.saturating_add(stale_ms) < now_ms
        }
        _ => false,
    }
}

/// The versioned-update rule, shared by the Redis scripts, the memcached CAS loop and the
/// simulator's model: an incoming entry of `version` is refused exactly when the tier holds a
/// newer version (`held`: the held entry's [`header`]). Equal versions replace each other
/// whatever their kinds: a fill of v over a tombstone of v read the row the write made, a
/// tombstone of v over a value of v costs one miss, and a value of v over a value of v is a
/// refresh (stale-while-revalidate) of the same data. The kinds are kept so the rule can tell
/// them apart should it ever need to.
pub fn blocks(held: (Kind, u64), incoming: Kind, version: u64) -> bool {
    let _ = incoming;
    held.1 > version
}

/// Whether the held entry `raw` refuses an incoming entry of `version` ([`blocks`] on its
/// [`header`]); an entry without a readable header never does (it is replaced, which repairs it).
pub fn held_blocks(raw: &[u8], incoming: Kind, version: u64) -> bool {
    header(raw).is_some_and(|held| blocks(held, incoming, version))
}

/// What the versioned-update rule reads of a held entry: its kind and version, from the header
/// alone, as the Redis scripts' `string.match(v, '^AS1|(%a)|(%d+)|')` reads them. Not
/// [`decode`]: its checksum covers the key the entry was encoded for, and the key a tier holds it
/// under can differ (a grouped key's `#g<generation>` suffix, a memcached key hashed for length
/// or bytes), so a decode under the tier's key failed on every value there and the memcached CAS
/// loop replaced newer values with older ones (the swarm's `listings:v1:r/rust:hot#g4`, v14 over
/// v16: `cargo sim --scenario swarm --strategy durable --seed 4294967307`).
pub fn header(raw: &[u8]) -> Option<(Kind, u64)> {
    let rest = raw.strip_prefix(MAGIC)?;
    let kind = match rest.first()? {
        b'v' => Kind::Value,
        b't' => Kind::Tombstone,
        b'a' => Kind::Absent,
        _ => return None,
    };
    let rest = rest.get(1..)?.strip_prefix(b"|")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b'|') {
        return None;
    }
    let version = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((kind, version))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corrupt {
    #[error("not an aside envelope (bad magic)")]
    Magic,
    #[error("malformed envelope header")]
    Header,
    #[error("checksum mismatch: corrupt, or stored under another key")]
    Checksum,
    #[error("unknown payload encoding {0:?}")]
    Encoding(String),
}

/// The payload encoding this version writes.
pub const ENCODING_RAW: &str = "r";

fn checksum(key: &str, version: u64, payload: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(key.as_bytes());
    h.update(&version.to_le_bytes());
    h.update(payload);
    h.finalize()
}

pub fn encode(key: &str, e: &Entry) -> Vec<u8> {
    match e {
        Entry::Value {
            version,
            fresh_until_ms,
            payload,
        } => {
            let c = checksum(key, *version, payload);
            let mut out =
                format!("AS1|v|{version}|{fresh_until_ms}|{c:08x}|{ENCODING_RAW}|").into_bytes();
            out.extend_from_slice(payload);
            out
        }
        Entry::Tombstone { version } => {
            format!("AS1|t|{version}|0|00000000|{ENCODING_RAW}|").into_bytes()
        }
        Entry::Absent { version } => {
            format!("AS1|a|{version}|0|00000000|{ENCODING_RAW}|").into_bytes()
        }
    }
}

pub fn decode(key: &str, raw: &[u8]) -> Result<Entry, Corrupt> {
    let rest = raw.strip_prefix(MAGIC).ok_or(Corrupt::Magic)?;
    let mut fields = rest.splitn(6, |&b| b == b'|');
    let mut next = || fields.next().ok_or(Corrupt::Header);
    let kind = next()?;
    let num = |f: &[u8]| {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Corrupt::Header)
    };
    let version = num(next()?)?;
    let fresh_until_ms = num(next()?)?;
    let sum = next()?;
    let encoding = next()?;
    let payload = next()?;
    if encoding != ENCODING_RAW.as_bytes() {
        return Err(Corrupt::Encoding(
            String::from_utf8_lossy(encoding).into_owned(),
        ));
    }
    match kind {
        b"t" if payload.is_empty() => Ok(Entry::Tombstone { version }),
        b"a" if payload.is_empty() => Ok(Entry::Absent { version }),
        b"v" => {
            let want = std::str::from_utf8(sum)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or(Corrupt::Header)?;
            if sum.len() != 8 || want != checksum(key, version, payload) {
                return Err(Corrupt::Checksum);
            }
            Ok(Entry::Value {
                version,
                fresh_until_ms,
                payload: payload.to_vec(),
            })
        }
        _ => Err(Corrupt::Header),
    }
}

/// The bytes an entry takes once encoded, to decide whether it fits a tier's item limit.
pub fn encoded_len(e: &Entry) -> usize {
    match e {
        Entry::Value {
            version,
            fresh_until_ms,
            payload,
        } => {
            "AS1|v|||00000000|r|".len() + digits(*version) + digits(*fresh_until_ms) + payload.len()
        }
        Entry::Tombstone { version } | Entry::Absent { version } => {
            "AS1|t||0|00000000|r|".len() + digits(*version)
        }
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `get_or_lease` leases for, read from the header alone: a tombstone, a value past
    /// its stale window by the reader's clock; never "no such row", a fresh value or garbage.
    #[test]
    fn unusable_reads_the_header_as_the_script_does() {
        let value = |fresh_until_ms| {
            encode(
                "k",
                &Entry::Value {
                    version: 3,
                    fresh_until_ms,
                    payload: b"p".to_vec(),
                },
            )
        };
        let tomb = encode("k", &Entry::Tombstone { version: 3 });
        let absent = encode("k", &Entry::Absent { version: 0 });
        assert!(unusable(&tomb, 0, 0));
        assert!(!unusable(&absent, u64::MAX, 0));
        assert!(
            !unusable(&value(0), u64::MAX, 0),
            "no freshness: never expires"
        );
        assert!(
            !unusable(&value(2_000), 2_000, 0),
            "fresh to the millisecond"
        );
        assert!(unusable(&value(2_000), 2_001, 0));
        assert!(
            !unusable(&value(2_000), 3_500, 1_500),
            "within the stale window"
        );
        assert!(unusable(&value(2_000), 3_501, 1_500));
        assert!(!unusable(b"AS1|t", 0, 0) && !unusable(b"garbage", 0, 0));
    }

    #[test]
    fn round_trips_and_lengths() {
        let v = Entry::Value {
            version: 42,
            fresh_until_ms: 1_700_000_000_000,
            payload: b"a|b\r\n\0".to_vec(),
        };
        let t = Entry::Tombstone { version: 7 };
        let a = Entry::Absent { version: 0 };
        for e in [&v, &t, &a] {
            let raw = encode("k", e);
            assert_eq!(decode("k", &raw).unwrap(), *e);
            assert_eq!(encoded_len(e), raw.len());
        }
        assert_eq!(encode("k", &t), b"AS1|t|7|0|00000000|r|");
        assert_eq!(encode("k", &a), b"AS1|a|0|0|00000000|r|");
        assert_eq!(
            decode("k", b"AS1|a|0|0|00000000|r|x"),
            Err(Corrupt::Header),
            "an absent entry carries no payload"
        );
    }

    #[test]
    fn the_versioned_rule() {
        let v = |version| (Kind::Value, version);
        let t = |version| (Kind::Tombstone, version);
        assert!(blocks(v(6), Kind::Value, 5) && !blocks(v(4), Kind::Value, 5));
        assert!(
            !blocks(v(5), Kind::Value, 5),
            "a refresh of the same version lands"
        );
        assert!(
            !blocks(t(5), Kind::Value, 5),
            "a fill of the tombstone's version is current"
        );
        assert!(
            blocks(t(6), Kind::Value, 5),
            "an older fill never lands after a newer write"
        );
        assert!(!blocks(t(5), Kind::Tombstone, 5) && !blocks(v(5), Kind::Tombstone, 5));
        assert!(
            blocks(v(6), Kind::Tombstone, 5),
            "an old tombstone never hides a newer value"
        );
    }

    #[test]
    fn corruption_and_cross_key_values_are_detected() {
        let v = Entry::Value {
            version: 3,
            fresh_until_ms: 0,
            payload: b"hello".to_vec(),
        };
        let raw = encode("k", &v);
        assert_eq!(decode("other", &raw), Err(Corrupt::Checksum));
        let mut flipped = raw.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode("k", &flipped), Err(Corrupt::Checksum));
        assert_eq!(decode("k", b"garbage"), Err(Corrupt::Magic));
        assert_eq!(decode("k", b"AS1|v|x|0|00000000|r|"), Err(Corrupt::Header));
        let mut future = encode(
            "k",
            &Entry::Value {
                version: 1,
                fresh_until_ms: 0,
                payload: b"p".to_vec(),
            },
        );
        let at = future.len() - 3;
        future[at] = b'z';
        assert_eq!(
            decode("k", &future),
            Err(Corrupt::Encoding("z".into())),
            "an unknown encoding is never misread"
        );
        assert_eq!(
            decode("k", b"AS1|t|1|0|00000000|r|junk"),
            Err(Corrupt::Header)
        );
        assert_eq!(decode("k", b"AS1|v|1"), Err(Corrupt::Header));
    }
}
