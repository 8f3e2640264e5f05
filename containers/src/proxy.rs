//! Latency between the app nodes and the servers, through noxious (the Rust port of Toxiproxy):
//! one proxy per server in the runner's process, listening on the cluster network's gateway
//! address. The app nodes run in containers of their own, and a DNAT rule in each one's nat
//! table ([`Proxies::dnat_rules`], added before the app node opens any connection) sends its
//! connections for `server:port` to the server's proxy instead: transparent to the clients, so
//! the master address a Sentinel reports still goes through the proxy. A latency fault adds a
//! `latency` toxic in both directions of every proxy, so that a round trip between an app node and
//! any server takes twice the fault's one-way latency longer; the heal removes them. Toxics apply
//! to connections already open (noxious re-creates a connection's links with the new toxic
//! chain without closing it).
//!
//! The simulator's latency fault delays every link, server to server too (replication, the
//! Sentinels); here only the app nodes' links are delayed.

use std::net::{IpAddr, SocketAddr};

use bmrng::RequestSender;
use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop, Stopper};
use noxious::socket::TcpListener;
use noxious::toxic::{
    StreamDirection, Toxic, ToxicEvent, ToxicEventKind, ToxicEventResult, ToxicKind,
};

use crate::Error;

/// Toxic events a proxy can hold in its queue.
const EVENTS: usize = 16;

struct Proxy {
    name: String,
    /// Where the app nodes' connections for `upstream` are sent.
    listen: SocketAddr,
    upstream: SocketAddr,
    events: RequestSender<ToxicEvent, ToxicEventResult>,
}

/// The proxies of one run; dropping them stops every proxy.
pub struct Proxies {
    proxies: Vec<Proxy>,
    /// Held for the proxies' lives: with its `Close` dropped, noxious cannot re-create a
    /// connection's links, and a toxic removed stays on every connection already open (found by
    /// `containers/tests/nemesis.rs`).
    _closes: Vec<Close>,
    stopper: Option<Stopper>,
}

/// A free port on `ip` (bound and released: noxious binds by address string).
fn free_port(ip: IpAddr) -> Result<u16, Error> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Docker(format!("no free port on {ip} for a proxy: {e}")))
}

impl Proxies {
    /// Starts a proxy on `gateway` for each `(name, server)`.
    pub async fn start(
        gateway: IpAddr,
        servers: &[(String, SocketAddr)],
    ) -> Result<Proxies, Error> {
        let (stop, stopper) = Stop::new();
        let mut proxies = Vec::new();
        let mut closes = Vec::new();
        for (name, upstream) in servers {
            let listen = SocketAddr::new(gateway, free_port(gateway)?);
            let config = ProxyConfig {
                name: name.clone(),
                listen: listen.to_string(),
                upstream: upstream.to_string(),
                enabled: true,
                rand_seed: None,
            };
            let (listener, info) =
                ProxyRunner::initialize_proxy::<TcpListener>(config, Toxics::empty())
                    .await
                    .map_err(|e| Error::Docker(format!("proxy for {name} on {listen}: {e}")))?;
            let (events, receiver) = bmrng::channel(EVENTS);
            let (close, closer) = Close::new();
            closes.push(close);
            let stop = stop.clone();
            tokio::spawn(async move {
                let _ = ProxyRunner::run_proxy(listener, info, receiver, stop, closer).await;
            });
            proxies.push(Proxy {
                name: name.clone(),
                listen,
                upstream: *upstream,
                events,
            });
        }
        Ok(Proxies {
            proxies,
            _closes: closes,
            stopper: Some(stopper),
        })
    }

    /// iptables arguments (nat table, OUTPUT) that send an app node's connections for each
    /// server to its proxy.
    pub fn dnat_rules(&self) -> Vec<Vec<String>> {
        self.proxies
            .iter()
            .map(|p| {
                [
                    "-t",
                    "nat",
                    "-A",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-d",
                    &p.upstream.ip().to_string(),
                    "--dport",
                    &p.upstream.port().to_string(),
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &p.listen.to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .collect()
    }

    /// The proxy in front of `upstream`, to time a round trip through it.
    pub fn front_of(&self, upstream: SocketAddr) -> Option<(String, SocketAddr)> {
        self.proxies
            .iter()
            .find(|p| p.upstream == upstream)
            .map(|p| (p.name.clone(), p.listen))
    }

    /// Adds `one_way_ms` of latency to both directions of every proxy (`None`: removes it).
    pub async fn latency(&self, one_way_ms: Option<u32>) -> Result<(), Error> {
        for p in &self.proxies {
            for (direction, name) in [
                (StreamDirection::Upstream, "aside-latency-up"),
                (StreamDirection::Downstream, "aside-latency-down"),
            ] {
                let kind = match one_way_ms {
                    Some(ms) => ToxicEventKind::AddToxic(Toxic {
                        kind: ToxicKind::Latency {
                            latency: u64::from(ms),
                            jitter: 0,
                        },
                        name: name.to_string(),
                        toxicity: 1.0,
                        direction,
                    }),
                    None => ToxicEventKind::RemoveToxic(name.to_string()),
                };
                let event = ToxicEvent {
                    proxy_name: p.name.clone(),
                    kind,
                };
                match p.events.send_receive(event).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        return Err(Error::Docker(format!("toxic on the {} proxy: {e}", p.name)))
                    }
                    Err(e) => {
                        return Err(Error::Docker(format!(
                            "the {} proxy does not answer: {e}",
                            p.name
                        )))
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        if let Some(s) = self.stopper.take() {
            s.stop();
        }
    }
}
