//! The workload: the production design's key shapes, picked by Zipf popularity, with a share of
//! writes and a think time between a client's ops. Every draw comes from the client's own RNG
//! ([`crate::seed::client`]), in a fixed order, so a seed fixes every client's ops.

use std::time::Duration;

use aside::Key;
use invariants::gen::SplitMix;

/// The namespace of the listings: a grouped namespace (`cache.grouped_namespaces`), one group
/// per subreddit.
pub const LISTINGS: &str = "listings";
const SUBREDDITS: [&str; 4] = ["rust", "programming", "python", "golang"];
const SORTS: [&str; 3] = ["hot", "new", "top"];

/// The seed's key shapes, most popular first (Zipf rank = position): a tenth hot listings
/// (`listings:v1:r/rust:hot`, invalidated by pattern), then posts (`posts:v1:42`) and comment
/// threads (`comments:v1:42:thread`) two to one.
pub fn keyspace(n: usize) -> Vec<String> {
    let listings = (n / 10).clamp(1, SUBREDDITS.len() * SORTS.len());
    let mut keys: Vec<Key> = (0..listings)
        .map(|i| {
            Key::new(
                LISTINGS,
                1,
                &format!(
                    "r/{}:{}",
                    SUBREDDITS[i % SUBREDDITS.len()],
                    SORTS[i / SUBREDDITS.len()]
                ),
            )
        })
        .collect::<Result<_, _>>()
        .expect("valid");
    for i in 0..n.saturating_sub(listings) {
        let k = if i % 3 == 2 {
            Key::new("comments", 1, &format!("{i}:thread"))
        } else {
            Key::new("posts", 1, &format!("{i}"))
        };
        keys.push(k.expect("valid"));
    }
    keys.iter().map(Key::to_string).collect()
}

/// Which Redis pair each key class goes to with `shards` pairs: the production design puts hot
/// posts on one and sessions on the other; here posts and listings stay on the first pair and
/// comment threads go to the second.
pub fn shard_map(shards: u8) -> aside::ShardMap {
    if shards < 2 {
        return aside::ShardMap::single();
    }
    let mut map = aside::ShardMap::new(usize::from(shards), 0).expect("at least two shards");
    for class in SECOND_PAIR_CLASSES {
        map = map.class(class, 1).expect("shard 1 exists");
    }
    map
}

/// The key classes of the second Redis pair ([`shard_map`]); the first holds every other.
pub const SECOND_PAIR_CLASSES: &[&str] = &["comments"];

/// `r/rust:` for a listing key: the prefix its siblings share (a new post changes every sort order
/// of its subreddit).
pub fn listing_prefix(key: &Key) -> Option<String> {
    if !key.as_str().starts_with("listings:") {
        return None;
    }
    key.id().split_once(':').map(|(sub, _)| format!("{sub}:"))
}

/// Zipf(s) over `n` keys by inverse CDF: key 0 is the most popular.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let w: Vec<f64> = (1..=n.max(1)).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        Zipf {
            cdf: w
                .iter()
                .map(|x| {
                    acc += x / total;
                    acc
                })
                .collect(),
        }
    }

    /// `u` uniform in [0, 1).
    pub fn sample(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// Uniform in [0, 1) from 53 random bits.
fn unit(rng: &mut SplitMix) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// What a client does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextOp {
    pub key: Key,
    pub write: bool,
}

/// The ops of every client: which key, read or write, how long to think after.
pub struct Workload {
    keys: Vec<String>,
    zipf: Zipf,
    write_ratio: f64,
    think_ms: (u64, u64),
    /// Share of ops on the one hot key (a viral post), drawn before the Zipf pick; 0 for none.
    hot_share: f64,
    /// The warming job app-1 runs beside its clients, if any.
    warming: Option<Warming>,
}

/// A warming job ([`aside::CacheAside::warmer`]): the `keys` hottest keys (the Zipf head, what a
/// previous run's hottest keys would be), a pass every `every_ms`, each at most `reads_per_sec`
/// keys a second. Its reads are recorded as client [`WARMER_CLIENT`]'s: judged as any read, but
/// not counted in the traffic's hit ratio and hit latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warming {
    pub keys: usize,
    pub reads_per_sec: u32,
    pub every_ms: u64,
}

/// The client number of the warming job's reads.
pub use invariants::history::WARMER_CLIENT;

impl Workload {
    pub fn new(keys: usize, zipf_s: f64, write_ratio: f64, think_ms: (u64, u64)) -> Workload {
        Workload {
            keys: keyspace(keys),
            zipf: Zipf::new(keys, zipf_s),
            write_ratio,
            think_ms,
            hot_share: 0.0,
            warming: None,
        }
    }

    /// The same workload with a warming job.
    pub fn with_warming(mut self, warming: Option<Warming>) -> Workload {
        self.warming = warming;
        self
    }

    /// The warming job and its keys, hottest first.
    pub fn warming(&self) -> Option<(Warming, Vec<Key>)> {
        let w = self.warming?;
        let keys = self.keys[..w.keys.min(self.keys.len())]
            .iter()
            .map(|k| Key::parse(k).expect("the keyspace's keys parse"))
            .collect();
        Some((w, keys))
    }

    /// The same workload with `share` of its ops on one hot key: the first post (a viral post,
    /// not a listing, so its writes touch no siblings).
    pub fn with_hot_key(mut self, share: f64) -> Workload {
        self.hot_share = share;
        self
    }

    /// The hot key, if the workload has one.
    pub fn hot_key(&self) -> Option<&str> {
        (self.hot_share > 0.0).then(|| {
            self.keys
                .iter()
                .find(|k| k.starts_with("posts:"))
                .unwrap_or(&self.keys[0])
                .as_str()
        })
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The other listings of `key`'s subreddit in the keyspace (none for a post or a thread).
    pub fn siblings(&self, key: &Key) -> Vec<String> {
        let Some(sub) = listing_prefix(key) else {
            return Vec::new();
        };
        let prefix = format!("listings:v1:{sub}");
        self.keys
            .iter()
            .filter(|k| k.starts_with(&prefix) && k.as_str() != key.as_str())
            .cloned()
            .collect()
    }

    /// The next op: with a hot key, first whether it is the hot key (one draw); then the key,
    /// then read or write (two draws).
    pub fn next(&self, rng: &mut SplitMix) -> NextOp {
        let hot = match self.hot_key() {
            Some(h) if unit(rng) < self.hot_share => Some(h),
            _ => None,
        };
        let zipf = self.zipf.sample(unit(rng));
        let k = hot.unwrap_or(&self.keys[zipf]);
        let write = unit(rng) < self.write_ratio;
        NextOp {
            key: Key::parse(k).expect("the keyspace holds valid keys"),
            write,
        }
    }

    /// The pause after an op, uniform in `think_ms` (one draw).
    pub fn think(&self, rng: &mut SplitMix) -> Duration {
        let (lo, hi) = self.think_ms;
        Duration::from_millis(lo + rng.below(hi.saturating_sub(lo).max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(40, 1.1);
        let mut rng = SplitMix(7);
        let mut counts = [0u32; 40];
        for _ in 0..10_000 {
            counts[z.sample(unit(&mut rng))] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[39]);
    }

    #[test]
    fn the_keyspace_has_the_seed_shapes_and_listings_share_a_prefix() {
        let keys = keyspace(40);
        assert_eq!(keys.len(), 40);
        assert_eq!(keys[0], "listings:v1:r/rust:hot");
        assert!(keys.iter().any(|k| k.starts_with("posts:v1:")));
        assert!(keys.iter().any(|k| k.ends_with(":thread")));
        let k = Key::parse(&keys[0]).unwrap();
        assert_eq!(listing_prefix(&k).as_deref(), Some("r/rust:"));
        let w = Workload::new(120, 1.1, 0.05, (2, 20));
        assert_eq!(
            w.siblings(&k),
            ["listings:v1:r/rust:new", "listings:v1:r/rust:top"]
        );
        assert!(w.siblings(&Key::parse("posts:v1:3").unwrap()).is_empty());
        assert_eq!(listing_prefix(&Key::parse("posts:v1:3").unwrap()), None);
    }

    #[test]
    fn a_hot_key_takes_its_share() {
        let w = Workload::new(40, 1.1, 0.05, (2, 20)).with_hot_key(0.35);
        let hot = w.hot_key().unwrap().to_string();
        assert!(hot.starts_with("posts:"));
        let mut rng = SplitMix(3);
        let n = 10_000;
        let on_hot = (0..n)
            .filter(|_| w.next(&mut rng).key.as_str() == hot)
            .count();
        // 35 % drawn hot, plus the post's own Zipf share.
        assert!(on_hot * 100 >= 35 * n, "{on_hot} of {n}");
        assert_eq!(Workload::new(40, 1.1, 0.05, (2, 20)).hot_key(), None);
    }

    #[test]
    fn one_seed_one_sequence_of_ops() {
        let w = Workload::new(40, 1.1, 0.05, (2, 20));
        let run = |seed| {
            let mut rng = SplitMix(seed);
            (0..200)
                .map(|_| {
                    let op = w.next(&mut rng);
                    (op, w.think(&mut rng))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert!(run(5).iter().any(|(op, _)| op.write));
    }
}
