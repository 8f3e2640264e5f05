//! Models of the servers, pure state machines: the simulator runs them inside madsim nodes, and
//! the conformance tests hold them to the real servers' answers. Redis and memcached live in the
//! library ([`aside::model`]), where [`aside::tier::mem`] runs them in process too.

pub use aside::model::{glob, memcached, redis};
pub mod postgres;

#[cfg(test)]
mod tests {
    /// The library's SCAN order is the harness's hash: pinned seeds depend on which keys a scan
    /// misses.
    #[test]
    fn scan_order_is_the_harness_hash() {
        for k in [
            "",
            "posts:v1:1",
            "listings:v1:r/rust:hot",
            "lease:x",
            "ключ",
        ] {
            assert_eq!(
                super::redis::scan_hash(k),
                invariants::payload::fnv1a(k.as_bytes()) >> 1,
                "{k}"
            );
        }
    }
}
