//! The payload every writer derives from (key, version), so that a checker can tell a corrupt
//! value, or one read under the wrong key, from the real thing without storing any values.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`: the one hash the harness uses for payloads, trace hashes and the
/// simulator's SCAN order.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(bytes.iter().copied(), FNV_OFFSET)
}

/// FNV-1a, 64 bit: tiny, stable across platforms and languages (a history may come from anywhere).
fn fnv1a_from(bytes: impl IntoIterator<Item = u8>, mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The payload of `key` at `version`: `v{version}-{16 hex digits}` where the digits are FNV-1a 64
/// of the key's bytes, a 0xff separator, and the version as 8 little-endian bytes.
pub fn expected(key: &str, version: u64) -> String {
    let h = fnv1a_from(key.bytes(), FNV_OFFSET);
    let h = fnv1a_from(std::iter::once(0xff).chain(version.to_le_bytes()), h);
    format!("v{version}-{h:016x}")
}

/// Whether `payload` is the one [`expected`] gives.
pub fn matches(key: &str, version: u64, payload: &str) -> bool {
    payload == expected(key, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_by_key_and_version_and_is_stable() {
        assert_ne!(expected("post:1", 1), expected("post:1", 2));
        assert_ne!(expected("post:1", 1), expected("post:2", 1));
        // Pinned: computed independently in Python; other writers must reproduce it.
        assert_eq!(expected("post:42", 7), "v7-a5948fa1d1c1ba7d");
        assert!(expected("post:42", 7).starts_with("v7-"));
        assert!(matches("k", 3, &expected("k", 3)));
        assert!(!matches("k", 3, &expected("k", 4)));
    }
}
