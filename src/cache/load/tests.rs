//! The miss path's round trips, command by command: what a cold read sends to each tier, and
//! that the lease it takes with its L1 read is always released.

use std::sync::Mutex;

use super::*;
use crate::model::memcached::{self as mc, MemcachedModel};
use crate::model::redis::{self as rd, RedisModel};
use crate::tier::mem::{
    InProcess, MemStore, MemcachedClient, MemcachedExec, RedisClient, RedisExec,
};
use crate::{Builtin, Ring};

/// Every command a tier was sent, named, in order, across the three tiers.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

struct LoggedRedis(InProcess<RedisModel>, Arc<Log>);
struct LoggedMemcached(InProcess<MemcachedModel>, Arc<Log>);
struct LoggedStore(MemStore, Arc<Log>);

impl RedisExec for LoggedRedis {
    async fn exec(&self, cmd: rd::Cmd) -> TierResult<rd::Reply> {
        self.1.push(match &cmd {
            rd::Cmd::GetOrLease { .. } => "L1 get_or_lease".into(),
            rd::Cmd::Versioned { release, .. } => match release {
                Some(_) => "L1 fill+release".into(),
                None => "L1 fill".into(),
            },
            rd::Cmd::Release { .. } => "L1 release".into(),
            rd::Cmd::Set { .. } => "L1 set".into(),
            other => format!("L1 {other:?}"),
        });
        self.0.exec(cmd).await
    }
}

impl MemcachedExec for LoggedMemcached {
    async fn exec(&self, cmd: mc::Cmd) -> TierResult<mc::Reply> {
        self.1.push(match &cmd {
            mc::Cmd::Gets(_) => "L2 gets".into(),
            mc::Cmd::Add { .. } => "L2 add".into(),
            mc::Cmd::Cas { .. } => "L2 cas".into(),
            mc::Cmd::Set { .. } => "L2 set".into(),
            other => format!("L2 {other:?}"),
        });
        self.0.exec(cmd).await
    }
}

impl Store for LoggedStore {
    async fn read(&self, key: &str, from: ReadFrom) -> TierResult<Option<Row>> {
        self.1.push("DB read".into());
        self.0.read(key, from).await
    }
    async fn write(&self, key: &str, payload: &[u8]) -> TierResult<crate::tier::Committed> {
        self.1.push("DB write".into());
        self.0.write(key, payload).await
    }
}

type Logged =
    CacheAside<RedisClient<LoggedRedis>, MemcachedClient<LoggedMemcached>, LoggedStore, Builtin>;

/// A cache over logged in-process tiers; its fills delete the lease they release
/// (`lease_linger_ms` 0), so a test sees it gone at once.
fn logged(strategy: Builtin) -> (Logged, Arc<Log>) {
    logged_with(
        strategy,
        CacheConfig {
            lease_linger_ms: 0,
            ..CacheConfig::default()
        },
    )
}

fn logged_with(strategy: Builtin, cfg: CacheConfig) -> (Logged, Arc<Log>) {
    let log = Arc::new(Log::default());
    let cfg = cfg.validate().unwrap();
    let l2 = MemcachedClient(LoggedMemcached(InProcess::default(), log.clone()));
    let pool = Pool::new(Ring::new(&["mc-1"]).unwrap(), vec![l2], &cfg);
    let cache = CacheAside::new(
        RedisClient(LoggedRedis(InProcess::default(), log.clone())),
        pool,
        LoggedStore(MemStore::default(), log.clone()),
        strategy,
        cfg,
        "test",
    );
    (cache, log)
}

fn lease_held<E: RedisExec>(l1: &RedisClient<E>, key: &Key) -> bool {
    let lease = Logged::lease_key(key);
    futures_util::FutureExt::now_or_never(l1.get(&lease))
        .expect("the in-process model answers at once")
        .unwrap()
        .is_some()
}

/// A cold read under `versioned`: five round trips, the last two sent together, where the miss
/// path used to send eight one after the other (L1 get, L2 gets, lease, DB, L1 fill, L2 gets,
/// L2 add, release).
#[tokio::test]
async fn a_cold_miss_asks_each_tier_once_and_fills_both_with_the_release_in_the_l1_fill() {
    let (c, log) = logged(Builtin::Versioned);
    let k = Key::new("posts", 1, "cold").unwrap();
    c.write(&k, b"hello").await.unwrap();
    c.l1().del(&[k.stored().into_owned()]).await.unwrap();
    c.l2.nodes[0].delete(k.as_str()).await.unwrap();
    log.take();
    let got = c.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.source, got.row.payload.as_slice()),
        (Source::Db, &b"hello"[..])
    );
    assert_eq!(
        log.take(),
        [
            "L1 get_or_lease",
            "L2 gets",
            "DB read",
            "L1 fill+release",
            "L2 add"
        ]
    );
    assert!(!lease_held(c.l1(), &k), "the fill released the lease");
    log.take();
    let again = c.get(&k).await.unwrap().unwrap();
    assert_eq!(again.source, Source::L1);
    assert_eq!(log.take(), ["L1 get_or_lease"], "a hit asks L1 once");
}

/// A tombstone in both tiers (the key was just written): the lease is taken with the L1 read,
/// and the L2 fill replaces the tombstone by `cas` with the token of the read's own `gets`.
#[tokio::test]
async fn after_a_write_the_miss_replaces_the_tombstones_without_asking_again() {
    let (c, log) = logged(Builtin::Versioned);
    let k = Key::new("posts", 1, "written").unwrap();
    c.write(&k, b"v1").await.unwrap();
    log.take();
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    assert_eq!(
        log.take(),
        [
            "L1 get_or_lease",
            "L2 gets",
            "DB read",
            "L1 fill+release",
            "L2 cas"
        ]
    );
    assert!(!lease_held(c.l1(), &k));
}

/// L1 empty, L2 holding the value: the lease taken with the L1 read goes back with the L1
/// backfill, in the same round trip.
#[tokio::test]
async fn an_l2_hit_returns_the_lease_with_its_l1_backfill() {
    let (c, log) = logged(Builtin::Versioned);
    let k = Key::new("posts", 1, "warm-l2").unwrap();
    c.write(&k, b"v1").await.unwrap();
    c.get(&k).await.unwrap();
    c.l1().del(&[k.stored().into_owned()]).await.unwrap();
    log.take();
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L2);
    assert_eq!(
        log.take(),
        ["L1 get_or_lease", "L2 gets", "L1 fill+release"]
    );
    assert!(!lease_held(c.l1(), &k));
}

/// A database that fails: nothing is filled, and the lease is released all the same (left
/// behind, it would make every other reader wait it out).
#[tokio::test]
async fn a_failed_load_releases_its_lease() {
    let (c, log) = logged(Builtin::Versioned);
    let k = Key::new("posts", 1, "down").unwrap();
    c.store().0.set_down(true);
    log.take();
    assert!(c.get(&k).await.is_err());
    assert_eq!(
        log.take(),
        ["L1 get_or_lease", "L2 gets", "DB read", "L1 release"]
    );
    assert!(!lease_held(c.l1(), &k));
}

/// `naive` has no fill script to carry the release: it goes as a command of its own, and the
/// lease is still gone afterwards.
#[tokio::test]
async fn naive_releases_its_lease_after_its_fill() {
    let (c, log) = logged(Builtin::Naive);
    let k = Key::new("posts", 1, "naive").unwrap();
    c.write(&k, b"v1").await.unwrap();
    log.take();
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    let sent = log.take();
    assert_eq!(sent[..3], ["L1 get_or_lease", "L2 gets", "DB read"]);
    assert!(sent.contains(&"L1 release".to_string()), "{sent:?}");
    assert!(!lease_held(c.l1(), &k));
}

/// With the default `lease_linger_ms`, the fill keeps the lease a moment: a reader that read
/// L1 just before the fill and asks for the lease now is refused, and it runs out on its own.
#[tokio::test]
async fn the_fill_keeps_the_lease_for_its_linger_then_it_runs_out() {
    let (c, _log) = logged_with(Builtin::Versioned, CacheConfig::default());
    let k = Key::new("posts", 1, "linger").unwrap();
    c.write(&k, b"v1").await.unwrap();
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    assert!(lease_held(c.l1(), &k), "kept for lease_linger_ms");
    let lease = Logged::lease_key(&k);
    let other = c.l1().set(&lease, b"other", 1_000, SetCond::Nx);
    assert!(
        !other.await.unwrap(),
        "another reader's lease request is refused meanwhile"
    );
    c.l1().0 .0.advance(CacheConfig::default().lease_linger_ms);
    assert!(!lease_held(c.l1(), &k), "run out after lease_linger_ms");
}
