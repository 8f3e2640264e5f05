use super::*;

fn row(version: u64) -> Row {
    Row {
        version,
        payload: format!("v{version}").into_bytes(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads `key` `n` times at `at`, offering `row` after each miss; what the last read got.
fn read_n(h: &HotKeys, key: &str, n: usize, at: Instant, r: &Row) -> Result<Row, Ticket> {
    let mut last = Err(Ticket {
        hot: false,
        writes: 0,
        writes_all: 0,
    });
    for _ in 0..n {
        last = h.read(key, at);
        if let Err(t) = last {
            h.offer(key, r, t, at);
        }
    }
    last
}

#[test]
fn a_key_is_served_from_l0_once_it_is_hot_and_until_its_ttl() {
    let h = HotKeys::new(100, 3, 8);
    let t0 = Instant::now();
    // Two reads: not hot yet, nothing held.
    assert!(read_n(&h, "k", 2, t0, &row(1)).is_err());
    assert_eq!(h.held(), 0);
    // The third makes it hot: its row is offered and held.
    assert!(read_n(&h, "k", 1, t0, &row(1)).is_err());
    assert_eq!(h.held(), 1);
    assert_eq!(h.read("k", t0 + ms(99)).unwrap(), row(1));
    // Past the TTL: a miss again, and the next offer refreshes it.
    let t = h.read("k", t0 + ms(100)).unwrap_err();
    assert!(h.offer("k", &row(2), t, t0 + ms(100)).put());
    assert_eq!(h.read("k", t0 + ms(150)).unwrap(), row(2));
}

#[test]
fn a_write_drops_the_row_and_refuses_the_reads_that_began_before_it() {
    let h = HotKeys::new(100, 1, 8);
    let t0 = Instant::now();
    let t = h.read("k", t0).unwrap_err();
    assert!(h.offer("k", &row(1), t, t0).put());
    // A read in flight across a write (its ticket taken before) may not put its row back.
    let before = h.read("other", t0).unwrap_err();
    let t = h.read("k", t0 + ms(200)).unwrap_err();
    h.forget("k");
    assert!(
        h.read("k", t0 + ms(1)).is_err(),
        "the write dropped the row"
    );
    assert_eq!(h.offer("k", &row(1), t, t0 + ms(201)), Offer::Written);
    // Another key's read is not refused (unless it shares the key's slot).
    assert!(h.offer("other", &row(7), before, t0).put());
    // A read that begins after the write may fill.
    let t = h.read("k", t0 + ms(202)).unwrap_err();
    assert!(h.offer("k", &row(2), t, t0 + ms(202)).put());
    // A pattern invalidation refuses every read in flight and empties L0.
    let t = h.read("x", t0 + ms(203)).unwrap_err();
    h.forget_all();
    assert_eq!(h.held(), 0);
    assert_eq!(h.offer("x", &row(3), t, t0 + ms(203)), Offer::Written);
}

#[test]
fn an_older_version_never_replaces_a_newer_one() {
    let h = HotKeys::new(100, 1, 8);
    let t0 = Instant::now();
    let a = h.read("k", t0).unwrap_err();
    let b = h.read("k", t0).unwrap_err();
    assert!(h.offer("k", &row(5), a, t0).put());
    assert_eq!(h.offer("k", &row(4), b, t0), Offer::Older);
    assert_eq!(h.read("k", t0).unwrap(), row(5));
}

#[test]
fn memory_is_bounded_by_keys_max_and_the_hot_key_survives_a_flood_of_cold_ones() {
    let h = HotKeys::new(1_000, 20, 4);
    let t0 = Instant::now();
    assert!(read_n(&h, "hot", 20, t0, &row(1)).is_err());
    assert_eq!(h.read("hot", t0).unwrap(), row(1));
    for i in 0..1_000 {
        let _ = h.read(&format!("cold{i}"), t0);
        assert!(h.counted() <= 4);
    }
    // Each cold key took the smallest counter's place, never the hot key's.
    assert!(h.read("hot", t0).is_ok());
    assert!(h.held() <= 4);
    // Cold keys made hot one after another: L0 never holds more than keys_max rows.
    let hk = HotKeys::new(1_000, 1, 4);
    for i in 0..100 {
        let k = format!("k{i}");
        let t = hk.read(&k, t0).unwrap_err();
        assert!(hk.offer(&k, &row(1), t, t0).put());
        assert!(hk.held() <= 4);
    }
}

#[test]
fn hotness_lasts_one_window_past_the_last_window_that_earned_it() {
    let h = HotKeys::new(10, 5, 8);
    let t0 = Instant::now();
    read_n(&h, "k", 5, t0, &row(1)).unwrap_err();
    // The next window: hot from its first read (it earned it in the window before).
    let w1 = t0 + WINDOW;
    let t = h.read("k", w1).unwrap_err();
    assert!(t.hot);
    // One read in window 1 does not earn window 2: cold again until five reads.
    let w2 = w1 + WINDOW;
    let t = h.read("k", w2).unwrap_err();
    assert!(!t.hot);
    for _ in 0..3 {
        assert!(!h.read("k", w2).unwrap_err().hot);
    }
    assert!(h.read("k", w2).unwrap_err().hot);
}

#[test]
fn a_newcomer_counts_its_inherited_reads_as_possible_overcount() {
    // Space-saving's guarantee: a counter's count less its overcount is a lower bound of the
    // key's true reads, so a cold key that inherits a big counter is not made hot by it.
    let h = HotKeys::new(100, 10, 2);
    let t0 = Instant::now();
    read_n(&h, "a", 9, t0, &row(1)).unwrap_err();
    read_n(&h, "b", 9, t0, &row(1)).unwrap_err();
    // "c" takes a 9-read counter: count 10, overcount 9: one certain read, not hot.
    assert!(!h.read("c", t0).unwrap_err().hot);
}
