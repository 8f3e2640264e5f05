//! A Sentinel node: pings the master, agrees with the others that it is down (quorum), the
//! leader of the new epoch (majority vote) promotes the replica. As real Sentinels do, every
//! Sentinel re-announces its configuration to the others every [`HELLO_EVERY`] (the hello
//! messages: a Sentinel that was cut off adopts the newest epoch once it hears one), and every
//! Sentinel reads the role of the instance it knows as the replica and reconfigures it when it
//! claims to be a master or follows another one (a returning old master is demoted by whichever
//! Sentinel reaches it first, not only by the one that promoted).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::Endpoint;
use madsim::time::{sleep, Instant};

use crate::net::{serve, Rpc, TAG_REDIS, TAG_SENTINEL};
use crate::nodes::redis::{Admin, AdminReply, Role};

struct SentinelState {
    master: SocketAddr,
    replica: Option<SocketAddr>,
    epoch: u64,
    voted: u64,
    sdown: bool,
}

/// A message to a Sentinel about one of the masters it monitors: shard N's (its own name, as
/// a real Sentinel's `sentinel monitor NAME`), each with its own epoch, votes and view.
#[derive(Clone)]
pub enum SentinelMsg {
    GetMaster(u8),
    IsDown(u8, SocketAddr),
    Vote(u8, u64),
    Config {
        shard: u8,
        epoch: u64,
        master: SocketAddr,
        replica: Option<SocketAddr>,
    },
}

#[derive(Clone)]
pub enum SentinelReply {
    Master(SocketAddr),
    Down(bool),
    Voted(bool),
    Ok,
    /// Not a master this Sentinel monitors.
    Unknown,
}

const DOWN_AFTER: Duration = Duration::from_millis(300);

/// How often a Sentinel announces its configuration to the others (Redis: every 2 s on the
/// masters' and replicas' `__sentinel__:hello` channel).
pub const HELLO_EVERY: Duration = Duration::from_secs(2);

const TICK: Duration = Duration::from_millis(100);

/// How long a replica must report the wrong role before a Sentinel reconfigures it. Real
/// Sentinels wait four hello periods (8 s); the model waits one, so that a split-brain's old
/// master is demoted within a scenario's few seconds: enough for a Sentinel that missed the
/// promoting Sentinel's announcement to hear the next hello first.
const ROLE_WAIT: Duration = HELLO_EVERY;

/// A Sentinel monitoring one master/replica pair per entry of `monitors` (shard N at N).
pub async fn sentinel_node(
    me: SocketAddr,
    peers: Vec<SocketAddr>,
    monitors: Vec<(SocketAddr, Option<SocketAddr>)>,
    quorum: usize,
) {
    let states: Arc<Vec<Mutex<SentinelState>>> = Arc::new(
        monitors
            .iter()
            .map(|&(master, replica)| {
                Mutex::new(SentinelState {
                    master,
                    replica,
                    epoch: 0,
                    voted: 0,
                    sdown: false,
                })
            })
            .collect(),
    );
    let ep = Endpoint::bind(me).await.expect("bind sentinel");
    let rpc = Rpc::bind(me.ip()).await;
    let handler_states = states.clone();
    madsim::task::spawn(serve(ep, TAG_SENTINEL, move |m: SentinelMsg| {
        let states = handler_states.clone();
        async move {
            let shard = match &m {
                SentinelMsg::GetMaster(s) | SentinelMsg::IsDown(s, _) | SentinelMsg::Vote(s, _) => {
                    *s
                }
                SentinelMsg::Config { shard, .. } => *shard,
            };
            // A name this Sentinel does not monitor: as a real one, no answer for it.
            let Some(st) = states.get(usize::from(shard)) else {
                return SentinelReply::Unknown;
            };
            let mut s = st.lock().unwrap();
            match m {
                SentinelMsg::GetMaster(_) => SentinelReply::Master(s.master),
                SentinelMsg::IsDown(_, a) => SentinelReply::Down(a == s.master && s.sdown),
                SentinelMsg::Vote(_, epoch) if epoch > s.voted => {
                    s.voted = epoch;
                    SentinelReply::Voted(true)
                }
                SentinelMsg::Vote(..) => SentinelReply::Voted(false),
                SentinelMsg::Config {
                    epoch,
                    master,
                    replica,
                    ..
                } => {
                    if epoch > s.epoch {
                        (s.epoch, s.master, s.replica, s.sdown) = (epoch, master, replica, false);
                    }
                    SentinelReply::Ok
                }
            }
        }
    }));
    // Shard 0's monitor runs in this task, each other shard's in its own (a one-pair cluster
    // schedules exactly as before shards existed).
    for shard in 1..monitors.len() {
        madsim::task::spawn(monitor(
            me,
            rpc.clone(),
            peers.clone(),
            states.clone(),
            shard as u8,
            quorum,
        ));
    }
    monitor(me, rpc, peers, states, 0, quorum).await
}

/// Watches shard `shard`'s master: failure detection, agreement, election, promotion, and the
/// replica's role.
async fn monitor(
    me: SocketAddr,
    rpc: Rpc,
    peers: Vec<SocketAddr>,
    states: Arc<Vec<Mutex<SentinelState>>>,
    shard: u8,
    quorum: usize,
) {
    let st = &states[usize::from(shard)];
    let mut last_ok = Instant::now();
    let mut last_hello = Instant::now();
    // Since when the replica has reported a role that is not "replica of our master".
    let mut wrong_since: Option<Instant> = None;
    loop {
        sleep(TICK).await;
        let (master, replica, epoch) = {
            let s = st.lock().unwrap();
            (s.master, s.replica, s.epoch)
        };
        if last_hello.elapsed() >= HELLO_EVERY {
            last_hello = Instant::now();
            announce(&rpc, &peers, shard, epoch, master, replica).await;
        }
        let ping = |a: SocketAddr| {
            rpc.call::<Admin, AdminReply>(a, TAG_REDIS, Admin::Ping, Duration::from_millis(100))
        };
        // The master and the replica are asked at once, as real Sentinels ask every instance
        // on its own link: an unreachable replica does not slow the master's failure detector.
        let (of_master, of_replica) = tokio::join!(ping(master), async {
            match replica {
                Some(r) => Some(ping(r).await),
                None => None,
            }
        });
        match &of_master {
            Ok(AdminReply::Pong(_)) => {
                last_ok = Instant::now();
                st.lock().unwrap().sdown = false;
            }
            _ => st.lock().unwrap().sdown = last_ok.elapsed() >= DOWN_AFTER,
        }
        // A replica that says it is a master (an old master back after a failover) or follows
        // someone else is told to follow ours; it resyncs and drops what it wrote alone. As
        // real Sentinels do, only while our master looks sane (it answered as a master now) and
        // after the wrong role has been reported for [`ROLE_WAIT`]: a Sentinel that has not yet
        // heard of a failover must not demote the master another Sentinel just promoted.
        let sane = matches!(of_master, Ok(AdminReply::Pong(Role::Master)));
        let wrong = match (replica, &of_replica) {
            (Some(r), Some(Ok(AdminReply::Pong(role)))) if r != master => {
                (*role != Role::Replica(master)).then_some(r)
            }
            _ => None,
        };
        match wrong {
            None => wrong_since = None,
            Some(r) => {
                let since = *wrong_since.get_or_insert_with(Instant::now);
                if sane && since.elapsed() >= ROLE_WAIT {
                    wrong_since = None;
                    let _ = rpc
                        .call::<Admin, AdminReply>(
                            r,
                            TAG_REDIS,
                            Admin::Follow(master),
                            Duration::from_secs(5),
                        )
                        .await;
                }
            }
        }
        if !st.lock().unwrap().sdown {
            continue;
        }
        // Objectively down once a quorum of Sentinels says so.
        let is_down = |r: &SentinelReply| matches!(r, SentinelReply::Down(true));
        let agree =
            1 + ask_peers(&rpc, &peers, || SentinelMsg::IsDown(shard, master), is_down).await;
        let Some(candidate) = replica else { continue };
        if agree < quorum {
            continue;
        }
        // Leader election for the next epoch: a majority of all Sentinels must vote for us.
        let new_epoch = epoch.max(st.lock().unwrap().voted) + 1;
        st.lock().unwrap().voted = new_epoch;
        let voted = |r: &SentinelReply| matches!(r, SentinelReply::Voted(true));
        let votes =
            1 + ask_peers(&rpc, &peers, || SentinelMsg::Vote(shard, new_epoch), voted).await;
        if votes * 2 <= peers.len() + 1 {
            sleep(Duration::from_millis(
                // Each Sentinel backs off by a different amount, so split votes do not repeat.
                50 + u64::from(match me.ip() {
                    IpAddr::V4(v4) => v4.octets()[3],
                    IpAddr::V6(v6) => v6.octets()[15],
                }) * 37,
            ))
            .await;
            continue;
        }
        if rpc
            .call::<Admin, AdminReply>(
                candidate,
                TAG_REDIS,
                Admin::Promote,
                Duration::from_millis(200),
            )
            .await
            .is_err()
        {
            continue;
        }
        {
            let mut s = st.lock().unwrap();
            (s.epoch, s.master, s.replica, s.sdown) = (new_epoch, candidate, Some(master), false);
        }
        crate::net::reached(me, aside::goal::Goal::SentinelPromoted);
        last_ok = Instant::now();
        last_hello = Instant::now();
        announce(&rpc, &peers, shard, new_epoch, candidate, Some(master)).await;
    }
}

/// Tells every other Sentinel this configuration (they adopt it if its epoch is newer).
async fn announce(
    rpc: &Rpc,
    peers: &[SocketAddr],
    shard: u8,
    epoch: u64,
    master: SocketAddr,
    replica: Option<SocketAddr>,
) {
    for &p in peers {
        let cfg = SentinelMsg::Config {
            shard,
            epoch,
            master,
            replica,
        };
        let _ = rpc
            .call::<SentinelMsg, SentinelReply>(p, TAG_SENTINEL, cfg, Duration::from_millis(100))
            .await;
    }
}

/// How many of the other Sentinels answer `msg` with a reply that `yes` accepts.
async fn ask_peers(
    rpc: &Rpc,
    peers: &[SocketAddr],
    msg: impl Fn() -> SentinelMsg,
    yes: impl Fn(&SentinelReply) -> bool,
) -> usize {
    let mut n = 0;
    for &p in peers {
        let r = rpc
            .call::<SentinelMsg, SentinelReply>(p, TAG_SENTINEL, msg(), Duration::from_millis(100))
            .await;
        n += usize::from(r.as_ref().is_ok_and(&yes));
    }
    n
}
