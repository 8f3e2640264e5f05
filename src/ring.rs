//! A Ketama consistent-hash ring for memcached nodes, point for point the ring libketama builds,
//! so services in other languages sharing the pool (pylibmc, spymemcached, twemproxy in ketama
//! mode, uhashring) map every key to the same node.
//!
//! libketama, for equal weights: for each server `s` ("host:port") and `i` in `0..k`, take
//! MD5(`"{s}-{i}"`) and cut its 16 bytes into four little-endian u32 points. `k` is 40 (160
//! points per server) except where libketama's single-precision `floorf(pct * 40.0 * n)` rounds
//! down to 39 (n = 61, 122, 237, …): we compute it the same way. A key goes to the first point at
//! or after the little-endian u32 of the first 4 bytes of MD5(key), wrapping around.
//!
//! Checked against Python's uhashring (`hash_fn="ketama"`) on 2000 keys (`test_data/`). Where
//! uhashring itself departs from libketama we follow libketama: a key hashing exactly onto a point
//! (uhashring takes the next one) and the 39-digest pool sizes (uhashring always takes 40). Keys
//! with a NUL byte are hashed whole here; libketama stops at the NUL.

use md5::{Digest, Md5};

/// Points per server for equal weights, as libketama gives for most pool sizes.
pub const POINTS_PER_SERVER: usize = 160;

/// MD5 digests per server: libketama's `floorf(pct * 40.0 * (float)n)` in single precision.
fn digests_per_server(n: usize) -> usize {
    let pct = 1.0f32 / n as f32;
    (pct * 40.0f32 * n as f32).floor() as usize
}

#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Vec<String>,
    /// (point, node index), sorted by point.
    points: Vec<(u32, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("a ring needs at least one node: give memcached nodes as host:port,host:port")]
    Empty,
    #[error("node {0:?} appears twice: each memcached node once")]
    Duplicate(String),
}

fn le(d: &[u8]) -> u32 {
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

impl Ring {
    /// Builds the ring over `nodes` ("host:port" as other clients name them).
    pub fn new<S: AsRef<str>>(nodes: &[S]) -> Result<Ring, RingError> {
        if nodes.is_empty() {
            return Err(RingError::Empty);
        }
        let nodes: Vec<String> = nodes.iter().map(|n| n.as_ref().to_string()).collect();
        let digests = digests_per_server(nodes.len());
        let mut points = Vec::with_capacity(nodes.len() * digests * 4);
        for (n, name) in nodes.iter().enumerate() {
            if nodes[..n].contains(name) {
                return Err(RingError::Duplicate(name.clone()));
            }
            for i in 0..digests {
                let d = Md5::digest(format!("{name}-{i}").as_bytes());
                for h in 0..4 {
                    points.push((le(&d[h * 4..]), n));
                }
            }
        }
        // Stable: equal points keep server order, as libketama's qsort on (point) happens to do
        // for distinct points (collisions between servers are vanishingly rare).
        points.sort_by_key(|&(p, _)| p);
        Ok(Ring { nodes, points })
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The index of the node `key` lives on.
    pub fn node_index(&self, key: &[u8]) -> usize {
        let h = le(&Md5::digest(key)[..4]);
        let i = self.points.partition_point(|&(p, _)| p < h);
        self.points[if i == self.points.len() { 0 } else { i }].1
    }

    /// The node `key` lives on.
    pub fn node(&self, key: &[u8]) -> &str {
        &self.nodes[self.node_index(key)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_gets_160_points_and_keys_spread() {
        let nodes = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];
        let r = Ring::new(&nodes).unwrap();
        assert_eq!(r.points.len(), 480);
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            counts[r.node_index(format!("key:{i}").as_bytes())] += 1;
        }
        assert!(counts.iter().all(|&c| c > 7_000), "uneven: {counts:?}");
    }

    #[test]
    fn pool_sizes_where_libketama_rounds_down_get_39_digests() {
        assert_eq!(digests_per_server(3), 40);
        for n in [61, 122, 237, 244, 474] {
            assert_eq!(digests_per_server(n), 39, "n={n}");
        }
        let names: Vec<String> = (0..61).map(|i| format!("10.0.0.{i}:11211")).collect();
        assert_eq!(Ring::new(&names).unwrap().points.len(), 61 * 156);
    }

    #[test]
    fn removing_a_node_only_moves_its_keys() {
        let all = Ring::new(&["a:1", "b:1", "c:1"]).unwrap();
        let two = Ring::new(&["a:1", "c:1"]).unwrap();
        for i in 0..5_000 {
            let k = format!("k{i}");
            let before = all.node(k.as_bytes());
            if before != "b:1" {
                assert_eq!(
                    two.node(k.as_bytes()),
                    before,
                    "{k} moved off a surviving node"
                );
            }
        }
    }

    #[test]
    fn bad_rings_are_errors() {
        assert_eq!(Ring::new::<&str>(&[]).unwrap_err(), RingError::Empty);
        assert_eq!(
            Ring::new(&["a:1", "a:1"]).unwrap_err(),
            RingError::Duplicate("a:1".into())
        );
    }

    /// Against an independent implementation: `test_data/ketama.tsv` was produced by Python's
    /// `uhashring` (ketama-compatible mode); see `test_data/README.md` for the command.
    #[test]
    fn matches_an_independent_ketama_implementation() {
        let text = include_str!("../test_data/ketama.tsv");
        let mut lines = text.lines().filter(|l| !l.starts_with('#'));
        let nodes: Vec<&str> = lines.next().expect("nodes line").split(',').collect();
        let ring = Ring::new(&nodes).unwrap();
        let mut n = 0;
        for line in lines {
            let (key, node) = line.split_once('\t').expect("key<TAB>node");
            assert_eq!(ring.node(key.as_bytes()), node, "key {key:?}");
            n += 1;
        }
        assert!(n >= 1000, "only {n} vectors");
    }
}
