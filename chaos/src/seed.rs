//! Every sub-seed of a run, derived from the run's seed here and nowhere else, so that adding a
//! component never shifts another's randomness. The derivations are the ones the simulator used
//! before this module existed, kept bit for bit so that old seeds still name the same runs.

/// The RNG seed of client `client` (0-based, unique across app nodes).
pub fn client(seed: u64, client: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (client + 1)
}

/// The query-time RNG of the PostgreSQL primary model.
pub fn pg_primary(seed: u64) -> u64 {
    seed ^ 0x9e37
}

/// The foreign writer's RNG (`crate::foreign`).
pub fn foreign(seed: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xf0e1_9000
}

/// The query-time RNG of the PostgreSQL replica model.
pub fn pg_replica(seed: u64) -> u64 {
    seed ^ 0x7f4a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_seeds_differ_between_components_and_clients() {
        let s = 42;
        let mut all: Vec<u64> = (0..18).map(|c| client(s, c)).collect();
        all.push(pg_primary(s));
        all.push(pg_replica(s));
        all.push(foreign(s));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
