//! A key moved by a ring change and moved back: the node it returns to must not serve what it
//! held before the writes made while it was out of the ring.

use super::*;
use crate::mutant::Mutant;
use crate::tier::mem::{MemMemcached, MemRedis, MemStore};
use crate::tier::Seen;
use crate::Builtin;

type Ringed = CacheAside<MemRedis, MemMemcached, MemStore, crate::Builtin>;

const NODES: [&str; 3] = ["a:1", "b:1", "c:1"];

fn ringed(mutant: Option<Mutant>) -> Ringed {
    let cfg = CacheConfig {
        mutant,
        ..CacheConfig::default()
    }
    .validate()
    .unwrap();
    let nodes = NODES.iter().map(|_| MemMemcached::default()).collect();
    let pool = Pool::new(Ring::new(&NODES).unwrap(), nodes, &cfg).with_spare(
        "d:1",
        MemMemcached::default(),
        &cfg,
    );
    let store = MemStore::default();
    CacheAside::new(
        MemRedis::default(),
        pool,
        store,
        Builtin::Versioned,
        cfg,
        "app-1",
    )
}

/// A key of `c:1` under the three-node ring.
fn key_on_c(c: &Ringed) -> Key {
    (0..1000)
        .map(|i| Key::new("posts", 1, &i.to_string()).unwrap())
        .find(|k| c.l2().node_index(k.route().as_bytes()) == 2)
        .expect("c:1 owns some key")
}

/// Reads `k` past L1 (as after L1 lost it), from L2 down.
async fn read_past_l1(c: &Ringed, k: &Key) -> u64 {
    c.l1().del(&[k.stored().into_owned()]).await.unwrap();
    c.get(k).await.unwrap().unwrap().row.version
}

/// c:1 leaves, the key is written, c:1 comes back: what does a read of the key see?
async fn leave_write_return(c: &Ringed) -> u64 {
    let k = key_on_c(c);
    c.write(&k, b"one").await.unwrap();
    assert_eq!(read_past_l1(c, &k).await, 1, "filled into c:1");
    c.l2().membership().change(&["a:1", "b:1"]).unwrap();
    c.write(&k, b"two").await.unwrap();
    assert_eq!(read_past_l1(c, &k).await, 2, "read from its new owner");
    c.l2().membership().change(&NODES).unwrap();
    read_past_l1(c, &k).await
}

#[tokio::test]
async fn a_node_that_left_and_returns_serves_no_value_older_than_the_writes_it_missed() {
    assert_eq!(leave_write_return(&ringed(None)).await, 2);
}

#[tokio::test]
async fn without_the_ring_it_left_being_invalidated_the_returning_node_serves_the_old_value() {
    assert_eq!(
        leave_write_return(&ringed(Some(Mutant::NoRingHistory))).await,
        1
    );
}

#[tokio::test]
async fn a_fill_whose_read_began_under_another_ring_is_refused() {
    let c = ringed(None);
    let k = key_on_c(&c);
    c.write(&k, b"one").await.unwrap();
    let epoch = c.l2().membership().epoch();
    c.l2().membership().change(&["a:1", "b:1"]).unwrap();
    let row = Row {
        version: 1,
        payload: b"one".to_vec(),
    };
    c.fill_l2(&k, Some(&row), Seen::Unknown, epoch).await;
    let n = c.l2().node_index(k.route().as_bytes());
    assert_eq!(c.l2().nodes[n].gets(&k.memcached()).await.unwrap(), None);
    c.fill_l2(&k, Some(&row), Seen::Unknown, epoch + 2).await;
    assert!(c.l2().nodes[n]
        .gets(&k.memcached())
        .await
        .unwrap()
        .is_some());
}

/// A group's generation is read from its node: a node that left the ring while the group's
/// generation moved on must not hand back the old generation (and the old generation's entries)
/// when it returns.
#[tokio::test]
async fn a_node_that_left_returns_with_the_groups_newer_generation() {
    let cfg = CacheConfig {
        grouped_namespaces: vec!["listings".into()],
        ..CacheConfig::default()
    }
    .validate()
    .unwrap();
    let nodes = NODES.iter().map(|_| MemMemcached::default()).collect();
    let pool = Pool::new(Ring::new(&NODES).unwrap(), nodes, &cfg);
    let c = CacheAside::new(
        MemRedis::default(),
        pool,
        MemStore::default(),
        Builtin::Versioned,
        cfg,
        "app-1",
    );
    // A group whose generation key lives on c:1.
    let k = (0..1000)
        .map(|i| Key::new("listings", 1, &format!("r/{i}:hot")).unwrap())
        .find(|k| {
            let g = k.generation_key().unwrap();
            c.l2().node_index(g.route().as_bytes()) == 2
        })
        .expect("c:1 owns some group");
    let gen_key = k.generation_key().unwrap();
    c.write(&k, b"one").await.unwrap();
    assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 1);
    c.l2().membership().change(&["a:1", "b:1"]).unwrap();
    c.store().write(k.as_str(), b"two").await.unwrap();
    let group = k.group().unwrap().to_string();
    c.invalidate_prefix("listings", 1, &group).await.unwrap();
    c.l2().membership().change(&NODES).unwrap();
    // L1 loses the generation and the key: both are read from c:1 again.
    let stored = c.resolve(&k).await.unwrap().stored().into_owned();
    let old = k.in_generation(0).stored().into_owned();
    c.l1()
        .del(&[gen_key.stored().into_owned(), stored, old])
        .await
        .unwrap();
    assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 2);
}
