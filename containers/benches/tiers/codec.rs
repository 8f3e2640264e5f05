//! Section 6 of the tiers bench: the typed values' codec (MessagePack) beside JSON.

use std::time::Instant;

use super::{pct, us};

/// A post as an application would cache it.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Post {
    id: u64,
    subreddit: String,
    title: String,
    score: i64,
    tags: Vec<String>,
    created_ms: u64,
}

/// Section 6: the typed values' codec beside JSON, call by call.
pub fn codec_figures(n: usize) {
    let post = Post {
        id: 4_242_424,
        subreddit: "rust".into(),
        title: "Deterministic simulation of a cache-aside system".into(),
        score: 1_234,
        tags: vec!["madsim".into(), "redis".into(), "memcached".into()],
        created_ms: 1_764_633_600_000,
    };
    let mp = aside::cache::encode_value(&post).unwrap();
    let js = serde_json::to_vec(&post).unwrap();
    let (mut t_mp, mut t_js) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let b = aside::cache::encode_value(&post).unwrap();
        let back: Post = aside::cache::decode_value(&b).unwrap();
        t_mp.push(t.elapsed());
        std::hint::black_box(back);
        let t = Instant::now();
        let b = serde_json::to_vec(&post).unwrap();
        let back: Post = serde_json::from_slice(&b).unwrap();
        t_js.push(t.elapsed());
        std::hint::black_box(back);
    }
    let (p_mp, p_js) = (pct(t_mp, 0.5), pct(t_js, 0.5));
    println!("\ntyped values: a post, {n} encode+decode each, interleaved   bytes   p50");
    println!(
        "  MessagePack, field names (write_as)   {:>22} {:>8}",
        mp.len(),
        us(p_mp)
    );
    println!(
        "  JSON (serde_json)                     {:>22} {:>8}",
        js.len(),
        us(p_js)
    );
    println!(
        "  MessagePack / JSON                    {:>22.2} {:>8.2}",
        mp.len() as f64 / js.len() as f64,
        p_mp.as_secs_f64() / p_js.as_secs_f64().max(1e-12)
    );
}
