//! Probabilistic early expiration (XFetch; `CacheConfig::early_refresh_beta`): the draw that
//! decides whether a fresh entry is reloaded before it expires, and the reload, once per key
//! per process. What an entry's freshness is (`fresh_until_ms` in its envelope) is the read
//! path's (`read.rs`); when it expires, the tier's.

use super::read::served;
use super::*;

/// Keys [`CacheAside::early_claims`] holds before it drops the claims that ran out.
const EARLY_CLAIMS_MAX: usize = 4096;

/// A number uniform in (0, 1] from `x` (splitmix64's finaliser: every input bit moves every
/// output bit), for draws the simulator must repeat for the same seed.
fn unit_draw(x: u64) -> f64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) + 1) as f64 / (1u64 << 53) as f64
}

/// XFetch's rule with `reach_ms` = Δ × β and the draw `u` in (0, 1]: reload now when
/// `reach × -ln(u) ≥ gap`, which for a uniform `u` happens with probability `exp(-gap / reach)`.
fn draws_early(reach_ms: f64, gap_ms: u64, u: f64) -> bool {
    reach_ms * -u.ln() >= gap_ms as f64
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// XFetch's draw for an entry that expires in `gap_ms`: refresh it now? True with
    /// probability `exp(-gap / (Δ × β))`, so early refreshes concentrate in the last few Δ.
    pub(super) fn refresh_early(&self, gap_ms: u64) -> bool {
        let beta = self.cfg.early_refresh_beta;
        let delta_ms = self.db_read_us.load(Relaxed) as f64 / 1000.0;
        let reach_ms = delta_ms * beta;
        // -ln(U) is at most 36.8 for a 53-bit U: farther out no draw can say yes (and most
        // reads are, so most reads draw nothing).
        if reach_ms == 0.0 || gap_ms as f64 > reach_ms * 36.8 {
            return false;
        }
        let n = self.early_draws.fetch_add(1, Relaxed);
        let u = unit_draw(fnv1a(&self.instance) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        draws_early(reach_ms, gap_ms, u)
    }

    /// Folds one database read's time into Δ (the last read weighs 1/8).
    pub(super) fn note_db_read(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u64;
        let avg = self.db_read_us.load(Relaxed);
        let next = if avg == 0 { us } else { (avg * 7 + us) / 8 };
        self.db_read_us.store(next.max(1), Relaxed);
    }

    /// A fresh value drawn for an early refresh: the lease winner reloads it before it expires;
    /// a loser is served the value, which is still fresh. Once per key per process: the key's
    /// other readers here, drawn while that refresh runs, are served without a lease round trip.
    pub(super) async fn refresh<L, F>(
        &self,
        key: &Key,
        row: Row,
        source: Source,
        ahead: Ahead,
        loader: &L,
    ) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        if !self.claim_early_refresh(key) {
            self.release_unused(key, &ahead.lease).await;
            self.count_hit(source);
            return served(row, source);
        }
        self.reload_or_serve(key, row, source, false, ahead, loader)
            .await
    }

    /// Claims `key`'s early refresh for this process, for as long as a database read may take
    /// (`db_timeout_ms`): false if a claim holds it. A refresh that fails leaves its claim to
    /// run out; the entry then expires and its misses take the lease as any miss does.
    pub(super) fn claim_early_refresh(&self, key: &Key) -> bool {
        let now = Instant::now();
        let mut claims = self.early_claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims.get(key.as_str()).is_some_and(|&until| until > now) {
            return false;
        }
        if claims.len() >= EARLY_CLAIMS_MAX {
            claims.retain(|_, until| *until > now);
        }
        claims.insert(key.as_str().to_string(), now + self.cfg.db_timeout());
        true
    }
}

#[cfg(test)]
mod tests;
