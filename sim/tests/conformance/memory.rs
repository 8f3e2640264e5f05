//! Memory pressure on memcached, the model against the real server: lowering the limit frees
//! nothing at once; stores past it evict what was read least recently; and an evicted key takes
//! an `add` again, which is how an evicted tombstone stops guarding its key.

use std::time::Duration;

use aside::backend::Memcached;
use aside::tier::MemcachedLike;
use sim::models::memcached::{self as mc, MemcachedModel, ITEM_OVERHEAD_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VICTIMS: usize = 40;
const VALUE_BYTES: usize = 150;
/// A real memcached's lowest `cache_memlimit`, in MiB.
const FLOOR_MIB: usize = 8;
/// What the real server holds when its limit falls to the floor: more than the floor.
const HELD_MIB: usize = 12;
/// Each exchange with the real server, so a silent server fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(30);

fn victim(i: usize) -> String {
    format!("victim:{i:02}")
}

/// Sends `cmd` to the real server and reads its one-line answer.
async fn line(addr: &str, cmd: &str) -> String {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(cmd.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while !out.ends_with(b"\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "memcached closed the connection after {cmd:?}");
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).trim().to_string()
    };
    (tokio::time::timeout(DEADLINE, exchange).await)
        .unwrap_or_else(|_| panic!("no answer to {cmd:?} within {DEADLINE:?}"))
}

/// `n` fillers named `prefix:N`, each the size of a victim, pipelined without replies, then a
/// round trip so they have all been stored.
async fn flood(addr: &str, prefix: &str, n: usize) {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let value = vec![b'f'; VALUE_BYTES];
        for chunk in (0..n).collect::<Vec<_>>().chunks(1024) {
            let mut batch = Vec::new();
            for i in chunk {
                let head = format!("set {prefix}:{i:07} 0 0 {VALUE_BYTES} noreply\r\n");
                batch.extend_from_slice(head.as_bytes());
                batch.extend_from_slice(&value);
                batch.extend_from_slice(b"\r\n");
            }
            s.write_all(&batch).await.unwrap();
        }
        s.write_all(b"version\r\n").await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while !out.ends_with(b"\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            out.extend_from_slice(&buf[..n]);
        }
        assert!(
            out.starts_with(b"VERSION"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    };
    (tokio::time::timeout(DEADLINE, exchange).await)
        .unwrap_or_else(|_| panic!("{n} fillers not stored within {DEADLINE:?}"));
}

fn model_set(m: &mut MemcachedModel, key: String, fill: u8) -> mc::Reply {
    let value = vec![fill; VALUE_BYTES];
    m.exec(
        0,
        mc::Cmd::Set {
            key,
            value,
            ttl_s: 0,
        },
    )
}

fn model_has(m: &mut MemcachedModel, key: &str) -> bool {
    matches!(
        m.exec(0, mc::Cmd::Gets(key.into())),
        mc::Reply::Value(Some(_))
    )
}

fn model_evictions(m: &mut MemcachedModel) -> u64 {
    match m.exec(0, mc::Cmd::Stats) {
        mc::Reply::Stats { evictions, .. } => evictions,
        other => panic!("{other:?}"),
    }
}

pub async fn memory_pressure_conformance(addr: &str) {
    let real = Memcached::new(addr.to_string(), 2);
    real.flush_all().await.unwrap();
    let mut model = MemcachedModel::default();
    let floor = line(addr, "cache_memlimit 1\r\n").await;
    assert!(
        floor.starts_with("MEMLIMIT_TOO_SMALL"),
        "the real floor the containers world fills with ballast: {floor}"
    );
    let value = vec![b'v'; VALUE_BYTES];
    for i in 0..VICTIMS {
        real.set(&victim(i), &value, 0).await.unwrap();
        model_set(&mut model, victim(i), b'v');
    }

    // Lowering the limit frees nothing at once: the real server holds more than its new limit
    // (the victims and HELD_MIB of fillers), the model twice its new limit.
    let item_bytes = victim(0).len() + VALUE_BYTES + ITEM_OVERHEAD_BYTES;
    flood(addr, "held", (HELD_MIB << 20) / item_bytes).await;
    let items = real.stat("curr_items").await.unwrap();
    assert_eq!(
        line(addr, &format!("cache_memlimit {FLOOR_MIB}\r\n")).await,
        "OK"
    );
    let limit = VICTIMS * item_bytes / 2;
    assert_eq!(
        model.exec(0, mc::Cmd::MemLimit { bytes: limit }),
        mc::Reply::Ok
    );
    assert_eq!(
        real.stat("curr_items").await.unwrap(),
        items,
        "real memcached freed items"
    );
    assert_eq!(model.len(), VICTIMS, "the model freed items");
    for i in 0..VICTIMS {
        let held = real.gets(&victim(i)).await.unwrap().is_some();
        assert!(
            held,
            "real memcached dropped {} when its limit fell",
            victim(i)
        );
        assert!(
            model_has(&mut model, &victim(i)),
            "the model dropped {}",
            victim(i)
        );
    }

    // Stores past the limit evict the items read least recently: three times what each
    // holds, in the victims' slab class.
    let evicted_real = real.stat("evictions").await.unwrap();
    let evicted_model = model_evictions(&mut model);
    flood(addr, "past", 3 * (HELD_MIB << 20) / item_bytes).await;
    for i in 0..3 * limit / item_bytes {
        model_set(&mut model, format!("past:{i:07}"), b'f');
    }
    assert!(real.stat("evictions").await.unwrap() > evicted_real);
    assert!(model_evictions(&mut model) > evicted_model);
    assert!(
        real.gets(&victim(0)).await.unwrap().is_none(),
        "real memcached kept the oldest victim"
    );
    assert!(
        !model_has(&mut model, &victim(0)),
        "the model kept the oldest victim"
    );

    // An evicted key is absent to `add`: an older value lands where a tombstone stood.
    assert!(real.add(&victim(0), b"old", 0).await.unwrap());
    let add = mc::Cmd::Add {
        key: victim(0),
        value: b"old".to_vec(),
        ttl_s: 0,
    };
    assert_eq!(model.exec(0, add), mc::Reply::Stored(true));

    assert_eq!(line(addr, "cache_memlimit 64\r\n").await, "OK");
    real.flush_all().await.unwrap();
}
