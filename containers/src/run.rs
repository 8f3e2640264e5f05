//! One scenario run against real servers: the same workload, client loop, nemesis runner,
//! probes and recorder as the simulator (all from `chaos`), over a freshly launched cluster,
//! writing a history with `"world":"containers"` that the same checkers judge.
//!
//! The app nodes run in this process (one `aside` instance per app node, shared by its clients),
//! so they share the host's address on the cluster network: faults that cut one app node from
//! the others cannot be applied here yet ([`unsupported`] says which scenarios and why).
//!
//! Clock: every line's time is this process's monotonic clock (`tokio::time::Instant`) since the
//! recorder started; every container shares the host kernel's clock, so server-side times (TTLs,
//! replica delay) run at the same rate.
//!
//! Payloads: the checkers expect the payload of (key, version) to be
//! `invariants::payload::expected(key, version)`. The simulator's database derives it; here a
//! trigger the harness installs ([`PAYLOAD_SQL`]) computes it in PostgreSQL from the version the
//! upsert assigns, so a value read back under the wrong key or version is caught as in the sim.

use std::sync::Arc;
use std::time::Duration;

use aside::Builtin;
use chaos::client::{nothing_else, Clients};
use chaos::fault::{Kind, Side, Target};
use chaos::nemesis::run_plan;
use chaos::probe::probe_all;
use chaos::record::Recorder;
use chaos::scenario::Scenario;

use crate::cluster::{Cluster, ClusterSpec};
use crate::nemesis::DockerNemesis;
use crate::Error;

/// FNV-1a 64 of (key, 0xff, version as 8 little-endian bytes) in PL/pgSQL, with numeric
/// arithmetic modulo 2^64, and a trigger that sets every row's payload from its key and version.
pub const PAYLOAD_SQL: &str = r#"
CREATE OR REPLACE FUNCTION aside_payload(k text, v bigint) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    h numeric := 14695981039346656037;
    two64 numeric := 18446744073709551616;
    bytes bytea := convert_to(k, 'UTF8') || '\xff'::bytea;
    i int;
    b int;
    lo int;
BEGIN
    FOR i IN 0..7 LOOP
        bytes := bytes || set_byte('\x00'::bytea, 0, ((v >> (8 * i)) & 255)::int);
    END LOOP;
    FOR i IN 0..length(bytes) - 1 LOOP
        b := get_byte(bytes, i);
        lo := mod(h, 256)::int;
        h := h - lo + (lo # b);
        h := mod(h * 1099511628211, two64);
    END LOOP;
    IF h >= 9223372036854775808 THEN
        h := h - two64;
    END IF;
    RETURN convert_to('v' || v || '-' || lpad(to_hex(h::bigint), 16, '0'), 'UTF8');
END
$$;
CREATE OR REPLACE FUNCTION aside_payload_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload := aside_payload(NEW.key, NEW.version);
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS aside_payload ON aside_rows;
CREATE TRIGGER aside_payload BEFORE INSERT OR UPDATE ON aside_rows
    FOR EACH ROW EXECUTE FUNCTION aside_payload_row();
"#;

/// Why this world cannot run `sc` faithfully yet, if it cannot.
pub fn unsupported(sc: &Scenario) -> Option<String> {
    if sc.buggify {
        return Some("BUGGIFY exists only in the simulator".into());
    }
    if sc.listing_transactions {
        return Some("listing transactions (sibling versions bumped together) are modelled only in the simulator's database".into());
    }
    if sc.random_plan {
        return Some(
            "random plans may cut or pause one app node, and app nodes share the host here".into(),
        );
    }
    for step in &sc.plan.steps {
        let f = step.fault;
        let one_app = |s: Side| matches!(s, Side::One(Target::App(_)));
        let peers = match f.kind {
            Kind::Partition { peers, .. } => Some(peers),
            _ => None,
        };
        if one_app(f.target) || peers.is_some_and(one_app) {
            return Some(format!(
                "{f} needs app nodes in containers of their own (they share the host here)"
            ));
        }
        if matches!(f.kind, Kind::Latency { .. }) {
            return Some("latency needs a Toxiproxy-compatible proxy between the apps and the servers, not built yet".into());
        }
    }
    None
}

/// What a run produced.
pub struct RunOutput {
    pub history: Vec<u8>,
    pub ops: u64,
}

/// Runs `sc` once with `strategy` against a fresh cluster; `seed` fixes every client's ops (the
/// servers' timing is real, so two runs of one seed are alike, not identical). The cluster is
/// removed when the run ends, also on an error or a panic.
pub async fn run(sc: &Scenario, strategy: Builtin, seed: u64) -> Result<RunOutput, Error> {
    if let Some(why) = unsupported(sc) {
        return Err(Error::Docker(format!(
            "{} cannot run against containers: {why}",
            sc.name
        )));
    }
    let cluster = Cluster::start(ClusterSpec {
        pg_apply_delay_ms: sc.pg_replica_lag_ms,
        ..ClusterSpec::default()
    })
    .await?;
    let workload = Arc::new(sc.workload());
    let cfg = sc.cache_config();
    let mut caches = Vec::new();
    for app in 0..sc.apps {
        let name = Target::App(app as u8).name();
        caches.push(cluster.library(strategy, cfg.clone(), &name).await?);
    }
    // The harness's data: the payload trigger, and every key at version 0 (as in the sim).
    let pg = caches[0].store().primary().clone();
    sqlx::raw_sql(PAYLOAD_SQL)
        .execute(&pg)
        .await
        .map_err(|e| Error::Docker(format!("installing the payload trigger: {e}")))?;
    for k in workload.keys() {
        sqlx::query(
            "INSERT INTO aside_rows (key, version, payload) VALUES ($1, 0, '') ON CONFLICT DO NOTHING",
        )
        .bind(k)
        .execute(&pg)
        .await
        .map_err(|e| Error::Docker(format!("seeding {k}: {e}")))?;
    }
    // Let the replica replay the seed rows.
    tokio::time::sleep(Duration::from_millis(sc.pg_replica_lag_ms + 500)).await;

    let rec = Arc::new(Recorder::start());
    let duration = Duration::from_millis(sc.duration_ms);
    let caches: Vec<_> = caches
        .into_iter()
        .map(|c| {
            let events: Arc<dyn aside::events::Events> = rec.clone();
            Arc::new(c.with_events(events))
        })
        .collect();
    let run = Clients {
        workload: workload.clone(),
        rec: rec.clone(),
        seed,
        duration,
        listing_tx: false,
        also: nothing_else,
    };
    let mut clients = Vec::new();
    for (app, cache) in caches.iter().enumerate() {
        for c in 0..sc.clients_per_app {
            let client = (app * sc.clients_per_app + c) as u64;
            clients.push(tokio::spawn(run.client(cache.clone(), client)));
        }
    }
    let mut nemesis = DockerNemesis::new(&cluster).map_err(Error::Docker)?;
    run_plan(&mut nemesis, &sc.plan, &rec).await;
    for c in clients {
        let _ = c.await;
    }
    tokio::time::sleep(Duration::from_millis(sc.settle_ms)).await;
    probe_all(&caches[0], workload.keys(), &rec).await;
    let header = sc.header("containers", strategy.name(), seed);
    Ok(RunOutput {
        ops: rec.ops(),
        history: rec.finish(&header),
    })
}
