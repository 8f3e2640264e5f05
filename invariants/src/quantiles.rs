//! A fixed-size log-linear histogram for latency and staleness quantiles: memory does not grow
//! with the number of samples, relative error is under 1/64 (about 1.6 %). Maxima are exact.

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Clone)]
pub struct Quantiles {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    ((shift as u64 + 1) * SUB + sub) as usize
}

/// The largest value that falls in bucket `b`: quantiles never understate.
fn upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let sub = b % SUB;
    let low = (SUB + sub) << shift;
    low + ((1u64 << shift) - 1)
}

impl Quantiles {
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// Nearest-rank quantile `q` in 0..=1 (rank `ceil(q * n)`), as the upper edge of its bucket,
    /// capped by the exact maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper(b).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_and_bound_relative_error() {
        for v in (0..5000u64).chain([u64::MAX, u64::MAX / 3, 1 << 40, (1 << 40) + 12345]) {
            let b = bucket(v);
            assert!(b < BUCKETS);
            let u = upper(b);
            assert!(u >= v, "upper({b})={u} < {v}");
            assert!(
                (u - v) as f64 <= v as f64 / SUB as f64 + 1.0,
                "error too large at {v}"
            );
        }
    }

    #[test]
    fn quantiles_of_known_samples() {
        let mut q = Quantiles::default();
        assert_eq!(q.quantile(0.5), None);
        for v in 1..=100 {
            q.record(v * 1000);
        }
        let p50 = q.quantile(0.5).unwrap();
        assert!((50_000..=50_000 + 50_000 / 64).contains(&p50), "{p50}");
        assert_eq!(q.quantile(1.0), Some(100_000));
        assert_eq!(q.max(), Some(100_000));
    }
}
