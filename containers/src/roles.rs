//! The Redis servers' roles over a run, read from their own logs: a history's `role` lines in
//! the containers world. Redis logs each change itself, and `docker logs --timestamps` stamps
//! each line with the host's clock, which the history's zero is mapped onto. Nothing is asked of
//! a server during the run, so a partition that cuts the harness from a node hides none of its
//! changes.
//!
//! What Redis 7 writes (`replication.c`, `server.c`):
//! * `MASTER MODE enabled (user request from ...)`: `REPLICAOF NO ONE`, a Sentinel's promotion;
//! * `REPLICAOF host:port enabled (user request from ...)`: a demotion, or a replica told to
//!   follow a new master (no change of role);
//! * `Connecting to MASTER host:port`: a replica (re)connecting, after a restart included;
//! * `Ready to accept connections`: a (re)start, its role in the line's prefix (`1:M` master,
//!   `1:S` replica).

use std::time::{SystemTime, UNIX_EPOCH};

use invariants::history::Role;

/// Each role the server whose `docker logs --timestamps` text is `log` took, in order, as
/// (ns since the history's zero, role), starting with `boot` (its role as launched) at the zero;
/// `zero_unix_ns` is the zero on the host's clock. Lines before the zero count from it;
/// consecutive lines of the same role make one change.
pub fn roles_in_log(log: &str, zero_unix_ns: u128, boot: Role) -> Vec<(u64, Role)> {
    let mut out: Vec<(u64, Role)> = vec![(0, boot)];
    for line in log.lines() {
        let Some((stamp, text)) = line.split_once(' ') else {
            continue;
        };
        let Some(role) = role_said(text) else {
            continue;
        };
        let Some(at) = unix_ns(stamp) else {
            continue;
        };
        if out.last().is_some_and(|&(_, r)| r == role) {
            continue;
        }
        let at_ns = at.saturating_sub(zero_unix_ns).min(u128::from(u64::MAX)) as u64;
        out.push((at_ns, role));
    }
    out
}

/// The role one Redis log line says the server took, if it says one.
fn role_said(text: &str) -> Option<Role> {
    if text.contains("MASTER MODE enabled") {
        return Some(Role::Master);
    }
    if text.contains("Connecting to MASTER")
        || (text.contains("REPLICAOF ") && text.contains(" enabled"))
    {
        return Some(Role::Replica);
    }
    if text.contains("Ready to accept connections") {
        // `1:M 07 Dec 2026 ...`: the process id, then the role's letter.
        let letter = text.split_whitespace().next()?.split_once(':')?.1;
        return match letter {
            "M" => Some(Role::Master),
            "S" => Some(Role::Replica),
            _ => None,
        };
    }
    None
}

/// `2026-12-07T05:01:02.123456789Z` (Docker's RFC 3339 stamp, in UTC or with an offset such as
/// `+01:00`) as ns since the epoch; `None` for anything else, out-of-range fields included.
fn unix_ns(stamp: &str) -> Option<u128> {
    let (date, time) = stamp.split_once('T')?;
    // The zone: `Z`, or `+hh:mm` / `-hh:mm` after the seconds.
    let (time, offset_s): (&str, i64) = if let Some(t) = time.strip_suffix('Z') {
        (t, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (t, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return None;
        }
        (t, sign * (h * 3600 + m * 60))
    };
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let in_range = (1970..=9999).contains(&y)
        && (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..61).contains(&s);
    if !in_range || frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u64 = format!("{frac:0<9}").parse().ok()?;
    let secs = days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    let secs = u64::try_from(secs).ok()?;
    Some(u128::from(secs) * 1_000_000_000 + u128::from(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The host's clock now, in ns since the epoch.
pub fn unix_now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_stamps_are_read_as_unix_time() {
        assert_eq!(unix_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_ns("2026-12-07T05:01:02.5Z"),
            Some(1_796_619_662_500_000_000)
        );
        assert_eq!(
            unix_ns("2000-03-01T00:00:01.000000001Z"),
            Some(951_868_801_000_000_001)
        );
        // The same instant an hour east of UTC.
        assert_eq!(
            unix_ns("2026-12-07T06:01:02.5+01:00"),
            unix_ns("2026-12-07T05:01:02.5Z")
        );
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T05:01:02",
            "2026-12-07T05:01:02.Z",
            "x",
            "2026-12-07T99:01:02Z",
            "2026-13-07T05:01:02Z",
            "99999999999-12-07T05:01:02Z",
            "2026-12-07T05:01:02+25:00",
        ] {
            assert_eq!(unix_ns(bad), None, "{bad:?}");
        }
    }

    /// A split brain as redis-master logs it: booted master, demoted by a Sentinel, connecting
    /// to its new master again and again, and a replica's promotion and restart.
    #[test]
    fn a_servers_log_gives_each_change_of_role_once_from_the_zero() {
        let zero = unix_ns("2026-12-07T05:00:00Z").unwrap();
        let log = "\
2026-12-07T04:59:59.000000000Z 1:M 07 Dec 2026 04:59:59.000 * Ready to accept connections tcp
2026-12-07T05:00:01.000000000Z 1:M 07 Dec 2026 05:00:01.000 * Some other line
2026-12-07T05:00:05.250000000Z 1:S 07 Dec 2026 05:00:05.250 * REPLICAOF 172.18.0.3:6379 enabled (user request from 'id=7 addr=172.18.0.5:41234')
2026-12-07T05:00:05.260000000Z 1:S 07 Dec 2026 05:00:05.260 * Connecting to MASTER 172.18.0.3:6379
2026-12-07T05:00:06.000000000Z 1:S 07 Dec 2026 05:00:06.000 * Connecting to MASTER 172.18.0.3:6379
2026-12-07T05:00:09.000000000Z 1:M 07 Dec 2026 05:00:09.000 * MASTER MODE enabled (user request from 'id=9')
2026-12-07T05:00:12.000000000Z 1:S 07 Dec 2026 05:00:12.000 * Ready to accept connections tcp
not a docker line
";
        let s = 1_000_000_000;
        assert_eq!(
            roles_in_log(log, zero, Role::Master),
            vec![
                (0, Role::Master),
                (5 * s + s / 4, Role::Replica),
                (9 * s, Role::Master),
                (12 * s, Role::Replica),
            ]
        );
        // A line that names no role gives none; a replica booted as one is one from the zero.
        let quiet = "2026-12-07T05:00:01Z 1:M x * Background saving";
        assert_eq!(
            roles_in_log(quiet, zero, Role::Replica),
            vec![(0, Role::Replica)]
        );
    }
}
