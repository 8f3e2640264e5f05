//! A scenario's workload as a scenario file's `[workload]` and a history header's
//! `config.workload` give it ([`WorkloadSpec`]), and how it sets a scenario's fields, each
//! checked against its limits ([`Scenario::apply_workload`]).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{FieldError, Scenario, APPS_MAX};

/// A scenario's workload as a scenario file's `[workload]` and a history header's
/// `config.workload` give it: every field optional (absent: the default), unknown fields refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub keys: Option<u64>,
    pub zipf_s: Option<f64>,
    pub write_ratio: Option<f64>,
    pub hot_key_share: Option<f64>,
    pub apps: Option<u64>,
    pub clients_per_app: Option<u64>,
    pub duration_ms: Option<u64>,
    pub think_ms: Option<[u64; 2]>,
    pub settle_ms: Option<u64>,
    pub net_latency_us: Option<[u64; 2]>,
    pub db_query_us: Option<[u64; 2]>,
    pub pg_replica_lag_ms: Option<u64>,
    pub read_from_replica: Option<bool>,
    pub listing_transactions: Option<bool>,
    pub grouped_listings: Option<bool>,
    pub foreign_writes: Option<bool>,
    pub l1_ttl_ms: Option<u64>,
    pub l2_ttl_ms: Option<u64>,
    pub stale_while_revalidate_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub early_refresh_beta: Option<f64>,
    pub pg_pool_max: Option<u64>,
    pub pg_pool_wait_ms: Option<u64>,
    pub db_concurrency_max: Option<u64>,
    pub db_wait_ms_max: Option<u64>,
    pub db_reads_per_sec_max: Option<u32>,
    pub l0_ttl_ms: Option<u64>,
    pub hot_reads_per_sec_min: Option<u64>,
    pub redis_shards: Option<u64>,
    pub warm_keys: Option<u64>,
    pub warm_reads_per_sec: Option<u64>,
    pub warm_every_ms: Option<u64>,
    /// Test machinery: a safeguard the library drops (`aside::mutant`); null: none.
    pub mutant: Option<String>,
    pub buggify: Option<bool>,
}

impl WorkloadSpec {
    /// A header's `config.workload`; an error names the field.
    pub fn from_json(w: &Value) -> Result<WorkloadSpec, FieldError> {
        serde_json::from_value(w.clone()).map_err(|e| {
            // serde_json names no path: find the field by reading each alone.
            let bad = w.as_object().and_then(|o| {
                o.iter().find(|(k, v)| {
                    let mut one = Map::new();
                    one.insert((*k).clone(), (*v).clone());
                    serde_json::from_value::<WorkloadSpec>(Value::Object(one)).is_err()
                })
            });
            match bad {
                Some((k, _)) => FieldError::new(format!("workload.{k}"), e.to_string()),
                None => FieldError::new("workload", e.to_string()),
            }
        })
    }
}

impl Scenario {
    /// Sets every field `w` gives.
    pub fn apply_workload(&mut self, w: &WorkloadSpec) -> Result<(), FieldError> {
        let size = |f: &str, n: u64, min: u64, max: u64| {
            if (min..=max).contains(&n) {
                Ok(n as usize)
            } else {
                Err(FieldError::new(
                    format!("workload.{f}"),
                    format!("{n} is out of range: use {min} to {max}"),
                ))
            }
        };
        if let Some(n) = w.keys {
            self.keys = size("keys", n, 1, 1_000_000)?;
        }
        if let Some(n) = w.apps {
            self.apps = size("apps", n, 1, APPS_MAX)?;
        }
        if let Some(n) = w.clients_per_app {
            self.clients_per_app = size("clients_per_app", n, 1, 1_000)?;
        }
        if let Some(n) = w.pg_pool_max {
            self.pg_pool_max = size("pg_pool_max", n, 1, 1_000)? as u32;
        }
        if let Some(n) = w.redis_shards {
            self.redis_shards = size("redis_shards", n, 1, super::REDIS_SHARDS_MAX.into())? as u8;
        }
        if let Some(n) = w.warm_keys {
            self.warm_keys = size("warm_keys", n, 0, 1_000_000)?;
        }
        if let Some(n) = w.warm_reads_per_sec {
            self.warm_reads_per_sec = size("warm_reads_per_sec", n, 1, 1_000_000)? as u32;
        }
        if let Some(n) = w.warm_every_ms {
            self.warm_every_ms = size("warm_every_ms", n, 1, 3_600_000)? as u64;
        }
        if let Some(n) = w.db_concurrency_max {
            self.db_concurrency_max = size("db_concurrency_max", n, 1, 100_000)?;
        }
        let ratio = |f: &str, x: f64| {
            if (0.0..=1.0).contains(&x) {
                Ok(x)
            } else {
                Err(FieldError::new(
                    format!("workload.{f}"),
                    format!("{x} is not a share: use a number from 0 to 1"),
                ))
            }
        };
        if let Some(x) = w.write_ratio {
            self.write_ratio = ratio("write_ratio", x)?;
        }
        if let Some(x) = w.hot_key_share {
            self.hot_key_share = ratio("hot_key_share", x)?;
        }
        if let Some(name) = &w.mutant {
            self.mutant = Some(
                aside::mutant::Mutant::from_name(name)
                    .map_err(|e| FieldError::new("workload.mutant", e))?,
            );
        }
        if let Some(x) = w.zipf_s {
            if !(x.is_finite() && x >= 0.0) {
                return Err(FieldError::new(
                    "workload.zipf_s",
                    format!("{x} is not a Zipf exponent: use a number of at least 0 (1.1: the default's skew)"),
                ));
            }
            self.zipf_s = x;
        }
        let range = |f: &str, [lo, hi]: [u64; 2]| {
            if lo <= hi {
                Ok((lo, hi))
            } else {
                Err(FieldError::new(
                    format!("workload.{f}"),
                    format!("[{lo}, {hi}] is not a range: give [low, high] with low <= high"),
                ))
            }
        };
        if let Some(r) = w.think_ms {
            self.think_ms = range("think_ms", r)?;
        }
        if let Some(r) = w.net_latency_us {
            self.net_latency_us = range("net_latency_us", r)?;
        }
        if let Some(r) = w.db_query_us {
            self.db_query_us = range("db_query_us", r)?;
        }
        macro_rules! copy {
            ($($f:ident),*) => {$(
                if let Some(x) = w.$f {
                    self.$f = x;
                }
            )*};
        }
        copy!(
            duration_ms,
            settle_ms,
            pg_replica_lag_ms,
            l1_ttl_ms,
            l2_ttl_ms,
            stale_while_revalidate_ms,
            lease_ms,
            early_refresh_beta,
            pg_pool_wait_ms,
            db_wait_ms_max,
            db_reads_per_sec_max,
            l0_ttl_ms,
            hot_reads_per_sec_min,
            read_from_replica,
            listing_transactions,
            grouped_listings,
            foreign_writes,
            buggify
        );
        // Client numbers 998 and 999 are the warming job's and the foreign writer's.
        let clients = self.apps * self.clients_per_app;
        if clients > crate::workload::WARMER_CLIENT as usize {
            return Err(FieldError::new(
                "workload.clients_per_app",
                format!(
                    "apps x clients_per_app is {clients}: at most {} clients (numbers 998 and 999 are the warming job's and the foreign writer's)",
                    crate::workload::WARMER_CLIENT
                ),
            ));
        }
        if self.duration_ms == 0 {
            return Err(FieldError::new(
                "workload.duration_ms",
                "is 0: a run needs a workload of at least 1 ms",
            ));
        }
        Ok(())
    }
}
