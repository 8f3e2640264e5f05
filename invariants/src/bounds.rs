//! The bounds the checkers judge a history by.
//!
//! Defaults come from the production design's SLOs: hit ratio
//! 85 %, cache hit p99 under 5 ms for Redis and 10 ms for Memcached, invalidation lag under 100 ms,
//! 99.9 % availability, a database that serves about 10 K queries per second. A history's header
//! `config` overrides them, and flags override the header. All names carry their unit last.

use serde_json::{Map, Value};

use crate::error::Problem;

/// Every bound and window the checkers use. `None` means "not bounded": the figure is reported and
/// the verdict says it was not judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Invariant 1: the largest allowed staleness Δ. Default 100 ms (invalidation lag).
    pub staleness_ns_max: Option<u64>,
    /// Invariant 1: how much staler than `staleness_ns_max` a read served from an app's hot-key
    /// L0 may be: the L0's TTL (a row there outlives another node's write until it expires).
    /// Default 0.
    pub l0_ttl_ns: u64,
    /// Invariant 6: width of the window in which database reads per key are counted. Default 1 s.
    pub fill_window_ns: u64,
    /// Invariant 6: database reads of one key within one fill window, counted from `warmup_ns`
    /// on (the boot is a cold start, which `db_qps_max` judges). No default.
    pub db_reads_per_key_per_window_max: Option<u64>,
    /// Invariant 6: width of the window peak database QPS is measured over. Default 1 s.
    pub db_qps_window_ns: u64,
    /// Invariant 6: peak database reads per second. Default 10 000.
    pub db_qps_max: Option<u64>,
    /// Invariant 6: the largest share of the reads that reached a cache server (served by L1,
    /// L2 or the database, from `warmup_ns` on) that one key may take: the load one node
    /// carries for one key (the production design's hot-key incident). No default.
    pub server_key_share_max: Option<f64>,
    /// Invariant 7: share of reads that must succeed while a fault is active. Default 0.999.
    pub availability_min: Option<f64>,
    /// Invariant 8: hit ratio over the steady phase. Default 0.85.
    pub hit_ratio_min: Option<f64>,
    /// Invariant 8: the share of the reads that a fault caught (from `warmup_ns` on) that L1
    /// must still serve: a fault on one part of L1 (one Redis shard) leaves the rest serving.
    /// No default.
    pub l1_hit_ratio_during_faults_min: Option<f64>,
    /// Invariant 8: p99 latency of all cache hits in the steady phase. No default.
    pub hit_latency_p99_ns_max: Option<u64>,
    /// Invariant 8: p99 latency of L1 (Redis) hits. Default 5 ms.
    pub l1_hit_latency_p99_ns_max: Option<u64>,
    /// Invariant 8: p99 latency of L2 (Memcached) hits. Default 10 ms.
    pub l2_hit_latency_p99_ns_max: Option<u64>,
    /// Liveness: the longest a read may take to end, served or failed. No default.
    pub read_duration_max_ns: Option<u64>,
    /// Liveness: p99 of how long reads take to end, served or failed, over the whole run
    /// (faults included: what shedding bounds). No default.
    pub read_latency_p99_ns_max: Option<u64>,
    /// Invariant 8: the steady phase starts here (reads during faults are never steady). Default 0.
    pub warmup_ns: u64,
    /// Invariant 3: T, how long after the quiet point (the last op's end or the last heal,
    /// whichever is later) every cache tier must hold nothing or the database's version of
    /// every key. Probes from then on are judged; earlier ones only tell how long a tier stayed
    /// diverged. No default: then each tier's last probe is judged, whenever it was taken.
    pub converge_within_ns: Option<u64>,
    /// Invariant 1: staleness leaves out the time no app node could read PostgreSQL's outbox
    /// (every app node cut from the primary, or its replies reset), for a strategy whose
    /// invalidations go through the outbox: none can be made then. Default false: only a
    /// write that completed while the outbox was out of sight counts from when it came back.
    pub staleness_excludes_outbox_blind: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            staleness_ns_max: Some(100_000_000),
            l0_ttl_ns: 0,
            fill_window_ns: 1_000_000_000,
            db_reads_per_key_per_window_max: None,
            db_qps_window_ns: 1_000_000_000,
            db_qps_max: Some(10_000),
            server_key_share_max: None,
            availability_min: Some(0.999),
            hit_ratio_min: Some(0.85),
            l1_hit_ratio_during_faults_min: None,
            hit_latency_p99_ns_max: None,
            l1_hit_latency_p99_ns_max: Some(5_000_000),
            l2_hit_latency_p99_ns_max: Some(10_000_000),
            read_duration_max_ns: None,
            read_latency_p99_ns_max: None,
            warmup_ns: 0,
            converge_within_ns: None,
            staleness_excludes_outbox_blind: false,
        }
    }
}

/// The names accepted in a header's `config` and in `--bound NAME=VALUE`.
pub const NAMES: &[&str] = &[
    "staleness_ns_max",
    "l0_ttl_ns",
    "fill_window_ns",
    "db_reads_per_key_per_window_max",
    "db_qps_window_ns",
    "db_qps_max",
    "server_key_share_max",
    "availability_min",
    "hit_ratio_min",
    "l1_hit_ratio_during_faults_min",
    "hit_latency_p99_ns_max",
    "l1_hit_latency_p99_ns_max",
    "l2_hit_latency_p99_ns_max",
    "read_duration_max_ns",
    "read_latency_p99_ns_max",
    "warmup_ns",
    "converge_within_ns",
    "staleness_excludes_outbox_blind",
];

impl Bounds {
    /// Applies every bound named in `config`; other config keys (workload, faults) are ignored.
    /// `null` switches a bound off.
    pub fn apply_config(&mut self, config: &Map<String, Value>) -> Result<(), Problem> {
        for name in NAMES {
            if let Some(v) = config.get(*name) {
                self.set(name, v)?;
            }
        }
        Ok(())
    }

    /// Every bound by its name, as a header's `config` carries it (`null`: not bounded); what
    /// [`Bounds::apply_config`] reads back to the same bounds.
    pub fn to_config(&self) -> Map<String, Value> {
        let opt = |v: Option<u64>| v.map_or(Value::Null, Value::from);
        let ratio = |v: Option<f64>| v.map_or(Value::Null, Value::from);
        let mut m = Map::new();
        for name in NAMES {
            let v = match *name {
                "staleness_ns_max" => opt(self.staleness_ns_max),
                "l0_ttl_ns" => Value::from(self.l0_ttl_ns),
                "fill_window_ns" => Value::from(self.fill_window_ns),
                "db_reads_per_key_per_window_max" => opt(self.db_reads_per_key_per_window_max),
                "db_qps_window_ns" => Value::from(self.db_qps_window_ns),
                "db_qps_max" => opt(self.db_qps_max),
                "server_key_share_max" => ratio(self.server_key_share_max),
                "availability_min" => ratio(self.availability_min),
                "hit_ratio_min" => ratio(self.hit_ratio_min),
                "l1_hit_ratio_during_faults_min" => ratio(self.l1_hit_ratio_during_faults_min),
                "hit_latency_p99_ns_max" => opt(self.hit_latency_p99_ns_max),
                "l1_hit_latency_p99_ns_max" => opt(self.l1_hit_latency_p99_ns_max),
                "l2_hit_latency_p99_ns_max" => opt(self.l2_hit_latency_p99_ns_max),
                "read_duration_max_ns" => opt(self.read_duration_max_ns),
                "read_latency_p99_ns_max" => opt(self.read_latency_p99_ns_max),
                "warmup_ns" => Value::from(self.warmup_ns),
                "converge_within_ns" => opt(self.converge_within_ns),
                "staleness_excludes_outbox_blind" => {
                    Value::from(self.staleness_excludes_outbox_blind)
                }
                other => unreachable!("bound {other} has no field"),
            };
            m.insert((*name).to_string(), v);
        }
        m
    }

    /// Sets one bound from a JSON value: an integer for `_ns`, `_max` and window names, a number
    /// in 0..=1 for ratios, `null` to switch an optional bound off, `true` or `false` for a
    /// rule.
    pub fn set(&mut self, name: &str, v: &Value) -> Result<(), Problem> {
        let err = |why: &str| Problem::BadConfig {
            key: name.to_string(),
            why: format!("{why}, got {v}"),
        };
        let int = || {
            v.as_u64()
                .ok_or_else(|| err("must be a non-negative integer"))
        };
        let window = || match v.as_u64() {
            Some(n) if n > 0 => Ok(n),
            _ => Err(err("must be a positive integer (nanoseconds)")),
        };
        let ratio = || match v.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(err("must be a number between 0 and 1")),
        };
        let opt = |f: &dyn Fn() -> Result<u64, Problem>| {
            if v.is_null() {
                Ok(None)
            } else {
                f().map(Some)
            }
        };
        let opt_ratio = || {
            if v.is_null() {
                Ok(None)
            } else {
                ratio().map(Some)
            }
        };
        match name {
            "staleness_ns_max" => self.staleness_ns_max = opt(&int)?,
            "l0_ttl_ns" => self.l0_ttl_ns = int()?,
            "fill_window_ns" => self.fill_window_ns = window()?,
            "db_reads_per_key_per_window_max" => self.db_reads_per_key_per_window_max = opt(&int)?,
            "db_qps_window_ns" => self.db_qps_window_ns = window()?,
            "db_qps_max" => self.db_qps_max = opt(&int)?,
            "server_key_share_max" => self.server_key_share_max = opt_ratio()?,
            "availability_min" => self.availability_min = opt_ratio()?,
            "hit_ratio_min" => self.hit_ratio_min = opt_ratio()?,
            "l1_hit_ratio_during_faults_min" => self.l1_hit_ratio_during_faults_min = opt_ratio()?,
            "hit_latency_p99_ns_max" => self.hit_latency_p99_ns_max = opt(&int)?,
            "l1_hit_latency_p99_ns_max" => self.l1_hit_latency_p99_ns_max = opt(&int)?,
            "l2_hit_latency_p99_ns_max" => self.l2_hit_latency_p99_ns_max = opt(&int)?,
            "read_duration_max_ns" => self.read_duration_max_ns = opt(&int)?,
            "read_latency_p99_ns_max" => self.read_latency_p99_ns_max = opt(&int)?,
            "warmup_ns" => self.warmup_ns = int()?,
            "converge_within_ns" => self.converge_within_ns = opt(&int)?,
            "staleness_excludes_outbox_blind" => {
                self.staleness_excludes_outbox_blind =
                    v.as_bool().ok_or_else(|| err("must be true or false"))?
            }
            _ => {
                return Err(Problem::BadConfig {
                    key: name.to_string(),
                    why: format!("is not a bound; known bounds: {}", NAMES.join(", ")),
                })
            }
        }
        Ok(())
    }
}

/// A bound given on the command line, applied after the header's.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub name: String,
    pub value: Value,
}

impl Override {
    /// Parses `NAME=VALUE`, where VALUE is JSON (`100`, `0.9`, `null`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, value) = s.split_once('=').ok_or_else(|| {
            format!("bound {s:?} is not NAME=VALUE (for example hit_ratio_min=0.9)")
        })?;
        let value: Value = serde_json::from_str(value.trim())
            .map_err(|_| format!("bound {name}: {value:?} is not a number, true, false or null"))?;
        let o = Override {
            name: name.trim().to_string(),
            value,
        };
        Bounds::default()
            .set(&o.name, &o.value)
            .map_err(|e| e.to_string())?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_overrides_defaults_and_null_switches_off() {
        let mut b = Bounds::default();
        let cfg = json!({"staleness_ns_max": 5, "hit_ratio_min": null, "workload": {"keys": 10}});
        b.apply_config(cfg.as_object().unwrap()).unwrap();
        assert_eq!(b.staleness_ns_max, Some(5));
        assert_eq!(b.hit_ratio_min, None);
        assert_eq!(b.db_qps_max, Some(10_000));
    }

    #[test]
    fn to_config_round_trips_through_apply_config() {
        let b = Bounds {
            staleness_ns_max: None,
            hit_ratio_min: Some(0.7),
            db_reads_per_key_per_window_max: Some(3),
            warmup_ns: 9,
            ..Bounds::default()
        };
        let mut back = Bounds::default();
        back.apply_config(&b.to_config()).unwrap();
        assert_eq!(back, b);
        assert_eq!(b.to_config().len(), NAMES.len());
    }

    #[test]
    fn bad_values_name_the_bound() {
        let mut b = Bounds::default();
        let e = b.set("hit_ratio_min", &json!(1.5)).unwrap_err().to_string();
        assert_eq!(
            e,
            "bound hit_ratio_min must be a number between 0 and 1, got 1.5"
        );
        assert!(b.set("fill_window_ns", &json!(0)).is_err());
        assert!(b.set("staleness_ns_max", &json!(-1)).is_err());
        assert!(Override::parse("nope=1")
            .unwrap_err()
            .contains("known bounds"));
        assert!(Override::parse("hit_ratio_min").is_err());
        assert_eq!(Override::parse("db_qps_max=5").unwrap().value, json!(5));
    }
}
