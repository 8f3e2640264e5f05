//! Early refresh with in-memory tiers: the draw's law, who reloads, and that β = 0 never does.

use super::super::harness::{cache, key, Mem};
use super::*;

#[test]
fn the_draw_says_yes_with_probability_exp_of_minus_gap_over_reach() {
    let draws = 200_000u64;
    for (reach_ms, gap_ms) in [(10.0, 0u64), (10.0, 10), (10.0, 30), (50.0, 10)] {
        let yes = (0..draws)
            .filter(|&n| {
                draws_early(
                    reach_ms,
                    gap_ms,
                    unit_draw(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                )
            })
            .count();
        let share = yes as f64 / draws as f64;
        let want = (-(gap_ms as f64) / reach_ms).exp();
        // 200 000 draws: the standard error is at most 0.0012.
        assert!(
            (share - want).abs() < 0.006,
            "reach {reach_ms} ms, gap {gap_ms} ms: {share} of draws said yes, expected {want}"
        );
    }
}

#[test]
fn a_draw_is_never_zero_or_over_one() {
    for x in [0, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15u64.wrapping_neg()] {
        let u = unit_draw(x);
        assert!(u > 0.0 && u <= 1.0, "{x}: {u}");
    }
}

/// A cache whose entries live `ttl_ms` in L1, over a database read that takes `delay_ms`,
/// with early refresh at β.
fn storm_cache(beta: f64, ttl_ms: u64, delay_ms: u64) -> Mem {
    cache(
        CacheConfig {
            l1_ttl_ms: ttl_ms,
            ttl_jitter: 0.0,
            early_refresh_beta: beta,
            ..CacheConfig::default()
        },
        delay_ms,
    )
}

#[tokio::test]
async fn an_entry_near_its_expiry_is_reloaded_early_and_then_served_from_l1_again() {
    // Δ is about 20 ms, β 100: the reach (2 s) is ten times the TTL, so a read of an entry at
    // most 200 ms from its expiry says yes with probability at least exp(-0.1) = 0.9.
    let c = storm_cache(100.0, 200, 20);
    let k = key("hot");
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    // The fill keeps its lease for `lease_linger_ms` (no refresh right after a fill): L1's
    // clock moves past it.
    c.l1().0.advance(CacheConfig::default().lease_linger_ms);
    let mut reads = 0;
    while c.metrics().early_refreshes.load(Relaxed) == 0 {
        reads += 1;
        assert!(reads <= 20, "20 reads and no early refresh");
        let g = c.get(&k).await.unwrap().unwrap();
        assert!(!g.stale, "an early refresh serves nothing stale");
    }
    assert_eq!(
        c.store().reads.load(Relaxed),
        2,
        "one load, one early reload"
    );
    // The reload filled L1: the claim holds this process's next draws, so the next read is a
    // plain L1 hit whatever it draws.
    let g = c.get(&k).await.unwrap().unwrap();
    assert_eq!(g.source, Source::L1);
    assert_eq!(c.store().reads.load(Relaxed), 2);
}

#[tokio::test]
async fn with_beta_0_an_entry_is_never_reloaded_before_it_expires() {
    let c = storm_cache(0.0, 200, 20);
    let k = key("hot");
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    for _ in 0..20 {
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
    }
    assert_eq!(c.metrics().early_refreshes.load(Relaxed), 0);
    assert_eq!(c.store().reads.load(Relaxed), 1);
}

#[tokio::test]
async fn a_key_is_claimed_once_per_process_until_a_database_read_could_have_ended() {
    let c = cache(
        CacheConfig {
            db_timeout_ms: 1,
            ..CacheConfig::default()
        },
        0,
    );
    let (a, b) = (key("a"), key("b"));
    assert!(c.claim_early_refresh(&a));
    assert!(!c.claim_early_refresh(&a), "a's refresh is claimed");
    assert!(c.claim_early_refresh(&b), "b is another key");
    // Past db_timeout_ms the claim has run out (a refresh that failed leaves it to do so).
    let deadline = Instant::now() + Duration::from_millis(1);
    while Instant::now() <= deadline {
        tokio::task::yield_now().await;
    }
    assert!(c.claim_early_refresh(&a));
}
