//! The Prometheus text exposition of a [`Snapshot`]: what a metrics endpoint serves, and what
//! the alerting rules in `deploy/prometheus/` are written against.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::{ReadLatency, Snapshot, TierSnapshot, BUCKETS};

type Labels = Vec<(&'static str, &'static str)>;
/// A per-tier counter for the exposition: name, help, and where its value is.
type PerTier = (&'static str, &'static str, fn(&TierSnapshot) -> u64);

impl Snapshot {
    /// The Prometheus text exposition (OpenMetrics), through `prometheus-client`: counters per
    /// tier (`aside_hits_total{tier="l1"}`, ...; hits also for `l0`, hot keys' L0), the hit ratios and latency quantiles as gauges,
    /// the read path's own counters, and the latency of reads through the cache as a histogram
    /// (`aside_read_latency_seconds`, what the shipped alerting rules judge). Serve it on your
    /// metrics endpoint ([`super::endpoint`]).
    pub fn prometheus(&self) -> String {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let mut registry = prometheus_client::registry::Registry::with_prefix("aside");
        let tiers = [("l1", &self.l1), ("l2", &self.l2), ("db", &self.db)];
        let per_tier: [PerTier; 9] = [
            (
                "hits",
                "Lookups a tier answered (db: reads it served)",
                |t| t.hits,
            ),
            (
                "misses",
                "Lookups a tier could not answer (db: absent rows)",
                |t| t.misses,
            ),
            ("fills", "Entries stored", |t| t.fills),
            ("fill_rejections", "Fills a newer entry refused", |t| {
                t.fill_rejections
            }),
            ("invalidations", "Invalidations sent", |t| t.invalidations),
            ("errors", "Calls that failed", |t| t.errors),
            (
                "corrupt",
                "Corrupt entries found (treated as misses)",
                |t| t.corrupt,
            ),
            ("skipped", "Calls skipped by an open circuit", |t| t.skipped),
            ("fenced", "Reads that skipped a fenced tier", |t| t.fenced),
        ];
        for (name, help, get) in per_tier {
            let family = Family::<Labels, Counter>::default();
            for (tier, t) in tiers {
                family.get_or_create(&vec![("tier", tier)]).inc_by(get(t));
            }
            if name == "hits" {
                // Hot keys' L0 answers lookups too, in process: only its hits are counted.
                family
                    .get_or_create(&vec![("tier", "l0")])
                    .inc_by(self.l0_hits);
            }
            registry.register(name, help, family);
        }
        let ratio = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let latency = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (tier, t) in tiers {
            if let Some(r) = t.hit_ratio {
                ratio.get_or_create(&vec![("tier", tier)]).set(r);
            }
            for (q, v) in [("0.5", t.latency_p50_us), ("0.99", t.latency_p99_us)] {
                if let Some(us) = v {
                    let labels = vec![("tier", tier), ("quantile", q)];
                    latency.get_or_create(&labels).set(us as f64 / 1e6);
                }
            }
        }
        registry.register("tier_hit_ratio", "hits / (hits + misses) per tier", ratio);
        registry.register(
            "latency_seconds",
            "Call latency quantiles per tier (upper bucket edges)",
            latency,
        );
        if let Some(r) = self.hit_ratio {
            let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(r);
            registry.register("hit_ratio", "Reads served by a cache tier", g);
        }
        for (name, help, v) in [
            (
                "coalesced",
                "Reads served by another read's load",
                self.coalesced,
            ),
            (
                "lease_waits",
                "Misses that waited for a lease winner's fill",
                self.lease_waits,
            ),
            (
                "shed",
                "Reads shed at the database limits (concurrency, reads per second)",
                self.shed,
            ),
            (
                "stale_served",
                "Values served past their freshness",
                self.stale_served,
            ),
            (
                "early_refreshes",
                "Fresh values reloaded shortly before they expired",
                self.early_refreshes,
            ),
            (
                "replica_guarded",
                "Misses sent to the primary by the replica guard",
                self.replica_guarded,
            ),
        ] {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            registry.register(name, help, c);
        }
        registry.register(
            "read_latency_seconds",
            "Reads through the cache, L1 to the database",
            ReadHistogram::of(&self.reads),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The read latency histogram as the exposition wants it: bucket `b`'s upper edge is 2^(b+1) µs
/// (a call lands in bucket `b` when its whole microseconds are 2^b to 2^(b+1) - 1), the last
/// bucket is `+Inf`.
#[derive(Debug)]
struct ReadHistogram {
    sum_s: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl ReadHistogram {
    fn of(r: &ReadLatency) -> ReadHistogram {
        let buckets = r
            .buckets
            .iter()
            .enumerate()
            .map(|(b, n)| {
                let le = if b + 1 == BUCKETS {
                    f64::INFINITY
                } else {
                    (2u64 << b) as f64 / 1e6
                };
                (le, *n)
            })
            .collect();
        ReadHistogram {
            sum_s: r.sum_ns as f64 / 1e9,
            count: r.count,
            buckets,
        }
    }
}

impl EncodeMetric for ReadHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum_s, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use crate::metrics::Metrics;

    const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

    fn exposition() -> String {
        let m = Metrics::default();
        m.l1.hits.fetch_add(8, Relaxed);
        m.l2.hits.fetch_add(1, Relaxed);
        m.db.hits.fetch_add(1, Relaxed);
        for ms in [1, 1, 3, 70] {
            m.reads.record(Duration::from_millis(ms));
        }
        m.snapshot().prometheus()
    }

    #[test]
    fn read_latency_is_a_cumulative_histogram_in_seconds() {
        let text = exposition();
        for line in [
            "# TYPE aside_read_latency_seconds histogram",
            "aside_read_latency_seconds_count 4",
            "aside_read_latency_seconds_sum 0.075",
            // 1 ms is 1000 µs: bucket 9 (512-1023 µs), upper edge 1024 µs.
            "aside_read_latency_seconds_bucket{le=\"0.001024\"} 2",
            "aside_read_latency_seconds_bucket{le=\"0.004096\"} 3",
            "aside_read_latency_seconds_bucket{le=\"0.065536\"} 3",
            "aside_read_latency_seconds_bucket{le=\"0.131072\"} 4",
            "aside_read_latency_seconds_bucket{le=\"+Inf\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }

    /// Every `aside_*` metric the shipped rules name is exported, with the labels they select
    /// on; with `promtool` on the path (`ASIDE_REQUIRE_PROMTOOL=1`, which the test command sets,
    /// makes it required) the rules pass `check rules` and their unit tests.
    #[test]
    fn the_shipped_alerting_rules_name_exported_metrics_and_pass_promtool() {
        let rules = std::fs::read_to_string(Path::new(RULES_DIR).join("aside-alerts.yml")).unwrap();
        let text = exposition();
        let mut named = Vec::new();
        for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let mut rest = line;
            while let Some(i) = rest.find("aside_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                if !named.contains(&name) {
                    named.push(name);
                }
            }
        }
        assert_eq!(
            named,
            ["aside_hits_total", "aside_read_latency_seconds_bucket"],
            "the rules' metrics"
        );
        for series in [
            "aside_hits_total{tier=\"l1\"}",
            "aside_hits_total{tier=\"l2\"}",
            "aside_hits_total{tier=\"db\"}",
            "aside_read_latency_seconds_bucket{le=\"+Inf\"}",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(series)),
                "{series} in\n{text}"
            );
        }

        let promtool = Command::new("promtool").arg("--version").output();
        if promtool.is_err() {
            assert!(
                std::env::var_os("ASIDE_REQUIRE_PROMTOOL").is_none(),
                "promtool not found: install Debian's prometheus package (ci/test.sh does)"
            );
            eprintln!("promtool not found: the rules were checked against the exposition only");
            return;
        }
        let run = |args: &[&str]| {
            let out = Command::new("promtool")
                .args(args)
                .current_dir(RULES_DIR)
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "promtool {args:?}:\n{said}");
            said
        };
        run(&["check", "rules", "aside-alerts.yml"]);
        let tested = run(&["test", "rules", "aside-alerts.test.yml"]);
        assert!(tested.contains("SUCCESS"), "{tested}");
        // Not `promtool check metrics`: it reads the classic text format, where a counter's
        // HELP names it with `_total` and OpenMetrics's does not, so it calls every counter
        // undocumented; Prometheus itself parses OpenMetrics by its content type.
    }
}
