use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn pool(retain: Duration) -> Membership {
    let m = Membership::new(vec!["a:1".into(), "b:1".into(), "c:1".into()], 3, retain);
    m.add_spare("d:1".into());
    m
}

/// A key `c:1` owns under the three-node ring and `want` owns under `members`.
fn key_moving(m: &Membership, members: &[&str], want: usize) -> String {
    let ring = Ring::new(members).unwrap();
    (0..10_000)
        .map(|i| format!("k{i}"))
        .find(|k| {
            m.owner(k.as_bytes()).0 == 2
                && members[ring.node_index(k.as_bytes())] == ["a:1", "b:1", "c:1", "d:1"][want]
        })
        .expect("some key moves")
}

#[tokio::test]
async fn a_staged_ring_is_invalidated_but_not_read_from() {
    let m = pool(HOUR);
    let k = key_moving(&m, &["a:1", "b:1", "d:1"], 3);
    m.stage(&["a:1", "b:1", "d:1"]).unwrap();
    assert_eq!(m.owner(k.as_bytes()).0, 2, "reads stay on the old ring");
    assert_eq!(m.owners(k.as_bytes()), vec![2, 3]);
}

#[tokio::test]
async fn a_node_that_left_is_still_invalidated_until_its_entries_are_dead() {
    let m = pool(HOUR);
    let k = key_moving(&m, &["a:1", "b:1"], 0);
    m.change(&["a:1", "b:1"]).unwrap();
    assert_eq!(m.owner(k.as_bytes()).0, 0, "reads move to the new ring");
    assert_eq!(
        m.owners(k.as_bytes()),
        vec![0, 2],
        "c:1 still holds what it had"
    );
    assert_eq!(m.members(), vec!["a:1", "b:1"]);
}

#[tokio::test]
async fn a_retired_ring_past_its_time_is_no_longer_invalidated() {
    let m = pool(Duration::ZERO);
    let k = key_moving(&m, &["a:1", "b:1"], 0);
    m.change(&["a:1", "b:1"]).unwrap();
    assert_eq!(m.owners(k.as_bytes()), vec![0]);
}

#[tokio::test]
async fn every_step_moves_the_epoch() {
    let m = pool(HOUR);
    let e = m.epoch();
    m.stage(&["a:1", "b:1", "c:1", "d:1"]).unwrap();
    assert_eq!(m.epoch(), e + 1);
    m.commit().unwrap();
    assert_eq!(m.epoch(), e + 2);
    assert_eq!(m.owner(b"x").1, e + 2);
}

#[tokio::test]
async fn bad_changes_are_errors_that_say_what_to_do() {
    let m = pool(HOUR);
    let e = m.stage(&["a:1", "x:1"]).unwrap_err();
    assert_eq!(e, MembershipError::NotInPool("x:1".into()));
    assert!(e.to_string().contains("Pool::with_spare"), "{e}");
    assert_eq!(m.commit().unwrap_err(), MembershipError::NothingStaged);
    let empty: [&str; 0] = [];
    assert_eq!(
        m.stage(&empty).unwrap_err(),
        MembershipError::Ring(RingError::Empty)
    );
    assert_eq!(m.members(), vec!["a:1", "b:1", "c:1"], "nothing changed");
}
