//! The miss path's round trips, command by command: what a cold read sends to each tier, and
//! that the lease it takes with its L1 read is always released; and the database limits a load
//! passes (shedding).

use std::sync::Mutex;

use super::super::harness::{cache, key};
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

// Shedding: the database limits of `load_db`, and what a read that has an entry is served when
// its reload is shed.

#[tokio::test]
async fn reads_over_the_database_limit_are_shed_not_queued_forever() {
    let cfg = CacheConfig {
        db_concurrency_max: 1,
        db_wait_ms_max: 20,
        lease_ms: 0,
        ..CacheConfig::default()
    };
    let c = Arc::new(cache(cfg, 200));
    let (a, b) = (c.clone(), c.clone());
    let first = tokio::spawn(async move { a.get(&key("a")).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = b.get(&key("b")).await;
    assert_eq!(
        second,
        Err(Error::Shed {
            waited_ms: 20,
            limit: 1
        })
    );
    assert_eq!(first.await.unwrap().unwrap().unwrap().source, Source::Db);
    assert_eq!(c.metrics().shed.load(Relaxed), 1);
}

#[tokio::test]
async fn reads_past_the_database_rate_wait_their_turn_or_are_shed_at_once() {
    // One read per second, a burst of 1, no wait: the second read within the second is shed
    // at once (the margin is the whole second).
    let cfg = |per_sec, wait_ms| CacheConfig {
        db_reads_per_sec_max: per_sec,
        db_wait_ms_max: wait_ms,
        lease_ms: 0,
        ..CacheConfig::default()
    };
    let c = cache(cfg(1, 0), 0);
    assert_eq!(c.get(&key("a")).await.unwrap().unwrap().source, Source::Db);
    let shed = c.get(&key("b")).await.unwrap_err();
    assert_eq!(
        shed,
        Error::RateLimited {
            wait_ms_max: 0,
            per_sec: 1
        }
    );
    assert_eq!(
        shed.to_string(),
        "database read rate at its limit (1/s, cache.db_reads_per_sec_max): the read's turn was more than 0 ms off (cache.db_wait_ms_max); read shed"
    );
    assert_eq!(c.metrics().shed.load(Relaxed), 1);
    assert_eq!(c.get(&key("a")).await.unwrap().unwrap().source, Source::L1);
    // 10 per second (a burst of 1) and a long wait: the second read waits its turn, 100 ms
    // after the first.
    let c = cache(cfg(10, 5_000), 0);
    let t0 = Instant::now();
    c.get(&key("a")).await.unwrap();
    c.get(&key("b")).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(c.metrics().shed.load(Relaxed), 0);
}

#[tokio::test]
async fn a_stale_value_whose_reload_is_shed_is_served_stale_not_failed() {
    // One database read a second, no wait: the first read takes it, and the reload of the
    // aged entry within the same second is shed.
    let cfg = CacheConfig {
        l1_ttl_ms: 30,
        ttl_jitter: 0.0,
        stale_while_revalidate_ms: 5_000,
        db_reads_per_sec_max: 1,
        db_wait_ms_max: 0,
        ..CacheConfig::default()
    };
    let c = cache(cfg, 0);
    let k = key("shed-swr");
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    tokio::time::sleep(Duration::from_millis(40)).await;
    // This reader wins the lease, its reload is shed: it is served what L1 holds, as stale.
    let g = c.get(&k).await.unwrap().unwrap();
    assert_eq!((g.source, g.stale), (Source::L1, true));
    let m = c.metrics();
    assert_eq!((m.shed.load(Relaxed), m.stale_served.load(Relaxed)), (1, 1));
    // The shed reload released its lease: the next reader may reload.
    let lease = format!("aside:lease:{k}");
    assert_eq!(c.l1().get(&lease).await.unwrap(), None);
}
