//! One run, driven the same way in every world. A [`World`] knows how to start an app node, how
//! to break its cluster (its [`Nemesis`]) and how to read every tier at the end; [`drive`] does
//! the rest, once for both worlds: the app nodes in order, the plan, the clients' end, the
//! probes' rounds over the settle. [`app_node`] is what one app node runs (its instance's events into the
//! recorder, its outbox invalidator, its numbered clients), also where the app node is a
//! process of its own (`aside chaos app` in a container).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aside::tier::{MemcachedLike, RedisLike, Store};
use aside::{CacheAside, Strategy};

use crate::client::Clients;
use crate::nemesis::{run_plan, Nemesis};
use crate::record::Recorder;
use crate::scenario::Scenario;

/// A task an app node runs until it ends (a client's loop, an outbox invalidator).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One world's side of a run: the simulator's nodes, or the containers.
// The simulator runs everything on one thread: no `Send` bound on the futures.
#[allow(async_fn_in_trait)]
pub trait World {
    /// Waits for one of an app node's clients to end.
    type Join: Future;

    /// The history's zero, when the world chose it before the run (app nodes in processes of
    /// their own were told it); `None`: the moment the run starts.
    fn origin(&self) -> Option<tokio::time::Instant> {
        None
    }
    /// How this world breaks and mends its cluster.
    type Nemesis: Nemesis;

    /// Starts app node `app` (0-based) with `clients_per_app` clients: builds its instance and
    /// hands it to [`app_node`] with a way to run tasks on that node. Returns its clients, or
    /// none when the node runs them itself.
    async fn start_app(
        &mut self,
        app: usize,
        clients: &Clients,
        clients_per_app: usize,
    ) -> Result<Vec<Self::Join>, String>;

    /// Starts the foreign writer (`crate::foreign`) of a scenario with foreign writes: its
    /// loop, `writer`, handed the world's way to its database. A world without one says so.
    async fn start_foreign(&mut self, writer: Foreign) -> Result<Self::Join, String> {
        let _ = writer;
        Err("this world has no foreign writer".into())
    }

    /// The nemesis for `plan`, once every app node has started.
    async fn nemesis(&mut self, plan: &crate::plan::Plan) -> Result<Self::Nemesis, String>;

    /// From the quiet point: reads the caches for each of `keys` in `rounds` (the database in
    /// the last), through an
    /// instance of the world's own, into `rec` ([`crate::probe::probe_rounds`]).
    async fn probe(
        &mut self,
        keys: &[String],
        rec: &Arc<Recorder>,
        rounds: crate::probe::Rounds,
    ) -> Result<(), String>;
}

/// Runs `sc` (as run with `seed`) in `world` and returns what it recorded: the recorder starts
/// (at the world's [`World::origin`], or now), every app node starts in order, then the plan
/// runs through the world's nemesis; when the clients are done (the quiet point), the probes'
/// rounds over the settle.
pub async fn drive<W: World>(
    world: &mut W,
    sc: &Scenario,
    seed: u64,
) -> Result<Arc<Recorder>, String> {
    let origin = world.origin();
    let rec = &Arc::new(match origin {
        Some(origin) => Recorder::start_at(origin),
        None => Recorder::start(),
    });
    if origin.is_some() {
        tokio::time::sleep_until(rec.origin()).await;
    }
    let workload = Arc::new(sc.workload());
    let clients = Clients {
        workload: workload.clone(),
        rec: rec.clone(),
        seed,
        duration: Duration::from_millis(sc.duration_ms),
        listing_tx: sc.listing_transactions,
    };
    let mut joins = Vec::new();
    for app in 0..sc.apps {
        joins.extend(world.start_app(app, &clients, sc.clients_per_app).await?);
    }
    if sc.foreign_writes {
        joins.push(
            world
                .start_foreign(Foreign {
                    workload: workload.clone(),
                    rec: rec.clone(),
                    seed,
                    duration: Duration::from_millis(sc.duration_ms),
                })
                .await?,
        );
    }
    let mut nemesis = world.nemesis(&sc.plan).await?;
    run_plan(&mut nemesis, &sc.plan, rec).await;
    for j in joins {
        let _ = j.await;
    }
    let rounds = crate::probe::Rounds {
        quiet: tokio::time::Instant::now(),
        settle: Duration::from_millis(sc.settle_ms),
    };
    world.probe(workload.keys(), rec, rounds).await?;
    Ok(rec.clone())
}

/// What the foreign writer of a run needs besides its database: [`Foreign::run`] over it.
#[derive(Clone)]
pub struct Foreign {
    pub workload: Arc<crate::workload::Workload>,
    pub rec: Arc<Recorder>,
    pub seed: u64,
    pub duration: Duration,
}

impl Foreign {
    /// The writer's loop over `db`, until the run's duration is over.
    pub async fn run(self, db: impl crate::foreign::ForeignDb) {
        crate::foreign::foreign_writer(db, self.workload, self.rec, self.seed, self.duration).await
    }
}

/// The client numbers of app node `app` (0-based): `clients_per_app` of them, after those of
/// the app nodes before it. A client's number and the run's seed fix its ops.
pub fn client_numbers(app: usize, clients_per_app: usize) -> std::ops::Range<u64> {
    let first = (app * clients_per_app) as u64;
    first..first + clients_per_app as u64
}

/// An app node once started: its instance and its clients (what the world's spawn returned).
pub struct AppNode<C, J> {
    pub cache: Arc<C>,
    pub clients: Vec<J>,
}

/// What app node `app` runs: `cache`, its events recorded by `clients.rec`, is shared by its
/// clients (one instance per app node, as in production: single-flight coalesces their misses,
/// they share breakers and metrics); its outbox invalidator (`durable`) and then each client
/// are handed to `spawn`, in that order. The clients begin once the instance is ready
/// ([`CacheAside::ready`]: with `durable`, after its invalidator's first whole pass).
pub fn app_node<R, M, S, St, J>(
    cache: CacheAside<R, M, S, St>,
    clients: &Clients,
    app: usize,
    clients_per_app: usize,
    mut spawn: impl FnMut(Task) -> J,
) -> AppNode<CacheAside<R, M, S, St>, J>
where
    R: RedisLike + 'static,
    M: MemcachedLike + 'static,
    S: Store + 'static,
    St: Strategy + 'static,
{
    let events: Arc<dyn aside::events::Events> = clients.rec.clone();
    let cache = Arc::new(cache.with_events(events));
    if let Some(invalidator) = cache.invalidator() {
        // It runs on through the settle and the probes; the world ends it.
        drop(spawn(Box::pin(invalidator)));
    }
    // Traffic reaches the instance once it is ready, as a readiness probe would route it, or
    // after the cache's database deadline all the same (the database still does not answer:
    // reads fail), as `aside::backend::connect` waits.
    let when_ready = |job: Task| -> Task {
        let cache = cache.clone();
        Box::pin(async move {
            cache.ready_within_db_timeout().await;
            job.await
        })
    };
    let mut joins: Vec<J> = client_numbers(app, clients_per_app)
        .map(|n| spawn(when_ready(Box::pin(clients.client(cache.clone(), n)))))
        .collect();
    // The warming job runs on the first app node, as one job per cluster does, and ends with
    // the workload: its reads are in the history like any client's.
    if app == 0 && clients.workload.warming().is_some() {
        joins.push(spawn(when_ready(Box::pin(crate::client::warmer(
            clients.clone(),
            cache.clone(),
        )))));
    }
    AppNode {
        cache,
        clients: joins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warmed_scenarios_job_warms_the_hottest_keys_first() {
        let sc = crate::scenario::find("cold-start-warmed").unwrap();
        let (w, keys) = sc.workload().warming().expect("a warming job");
        assert_eq!((w.keys, w.reads_per_sec, w.every_ms), (50, 500, 250));
        let all = crate::workload::keyspace(sc.keys);
        let named: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(named, all[..50], "the Zipf head, hottest first");
        assert!(crate::scenario::find("cold-start")
            .unwrap()
            .workload()
            .warming()
            .is_none());
    }

    #[test]
    fn client_numbers_follow_on_from_the_app_nodes_before() {
        assert_eq!(client_numbers(0, 3), 0..3);
        assert_eq!(client_numbers(2, 3), 6..9);
        assert_eq!(client_numbers(1, 0), 0..0);
    }
}
