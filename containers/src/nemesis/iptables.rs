//! Partitions and packet loss as iptables rules inside the containers' own network namespaces
//! (the containers get `NET_ADMIN`; the host's firewall is never touched), staged per fault and
//! applied per container in one `docker exec`, every container at once.

use chaos::fault::{Fault, Side, Target};

use super::{DockerNemesis, CONNECT_TIMEOUT};
use crate::cluster::Node;
use crate::docker::{docker, exec};

/// One iptables rule added inside a container, to delete at the heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rule {
    container: String,
    args: Vec<String>,
}

/// (from, to): a connection that a cut between containers must stop.
pub(super) type CutPair<'a> = ((Target, &'a Node), (Target, &'a Node));

/// `Some(what was seen)` when the connection of `pair` fails.
pub(super) async fn cut_seen(((tt, from), (pt, to)): CutPair<'_>) -> Option<String> {
    DockerNemesis::reaches(from, to).await.err().map(|e| {
        format!(
            "{} -> {} ({}:{}): no connection ({e})",
            tt.name(),
            pt.name(),
            to.ip,
            to.port
        )
    })
}

/// Runs `iptables OP RULE` for every rule: one `docker exec` per container, every container at
/// once. Returns the containers where a command failed (each is tried).
async fn iptables_batches(rules: &[(Fault, Rule)], op: &str) -> Vec<String> {
    let mut by: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (_, r) in rules {
        by.entry(r.container.as_str())
            .or_default()
            .push(format!("iptables {op} {} || rc=1", r.args.join(" ")));
    }
    let runs = by.iter().map(|(c, cmds)| async move {
        let script = format!("rc=0; {}; exit $rc", cmds.join("; "));
        docker(&["exec", "-u", "root", c, "sh", "-c", &script])
            .await
            .err()
            .map(|e| format!("{c}: {e}"))
    });
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

impl<'a> DockerNemesis<'a> {
    pub(super) fn add_rule(&mut self, fault: Fault, node: &Node, args: Vec<String>) {
        self.staged.push((
            fault,
            Rule {
                container: node.container.id().to_string(),
                args,
            },
        ));
    }

    /// Adds every staged rule: one `docker exec` per container, all containers at once (each
    /// exec takes about 90 ms; one by one, a split-brain's cuts would start 0.5 s apart).
    pub(super) async fn apply_staged(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        for c in iptables_batches(&staged, "-A").await {
            tracing::warn!(container = %c, "adding a rule failed");
        }
        // Kept also where adding failed: deleting a rule that is not there is harmless.
        self.rules.extend(staged);
    }

    /// Deletes the rules of `faults`, all containers at once.
    pub(super) async fn drop_rules(&mut self, faults: &[Fault]) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rules)
            .into_iter()
            .partition(|(f, _)| faults.contains(f));
        self.rules = rest;
        for c in iptables_batches(&mine, "-D").await {
            tracing::warn!(container = %c, "removing a rule failed");
        }
    }

    pub(super) fn stage_cut(&mut self, fault: Fault, peers: Side, one_way: bool) {
        let s = |x: &str| x.to_string();
        if self.is_apps(fault.target) {
            // Rules on the servers' side: what they send to the apps is lost, and for a
            // symmetric cut what they receive from them.
            for (_, p) in self.side(peers) {
                let apps = self.apps.to_string();
                self.add_rule(
                    fault,
                    p,
                    vec![s("OUTPUT"), s("-d"), apps.clone(), s("-j"), s("DROP")],
                );
                if !one_way {
                    self.add_rule(
                        fault,
                        p,
                        vec![s("INPUT"), s("-s"), apps, s("-j"), s("DROP")],
                    );
                }
            }
            return;
        }
        let mut peer_ips: Vec<(Option<&'a Node>, String)> = self
            .side(peers)
            .into_iter()
            .filter(|(t, _)| !fault.target.contains(*t))
            .map(|(t, n)| (matches!(t, Target::App(_)).then_some(n), n.ip.to_string()))
            .collect();
        if self.is_apps(peers) {
            peer_ips.push((None, self.apps.to_string()));
        }
        let drop =
            |chain: &str, flag: &str, ip: &str| vec![s(chain), s(flag), s(ip), s("-j"), s("DROP")];
        // Behind the proxies a server sees every app node's connection come from the proxy, so a
        // cut between an app node and a server is made in the app node, by the address it
        // dialled (conntrack's original destination, before the DNAT to the proxy).
        let dialled = |chain: &str, ip: &str| {
            vec![
                s(chain),
                s("-m"),
                s("conntrack"),
                s("--ctorigdst"),
                s(ip),
                s("-j"),
                s("DROP"),
            ]
        };
        let proxied = self.proxies.is_some();
        for (tt, t) in self.side(fault.target) {
            let target_app = matches!(tt, Target::App(_));
            for (peer_app, ip) in &peer_ips {
                match (proxied, target_app, peer_app) {
                    // The target is an app node, the peer a server.
                    (true, true, None) => {
                        self.add_rule(fault, t, dialled("INPUT", ip));
                        if !one_way {
                            self.add_rule(fault, t, dialled("OUTPUT", ip));
                        }
                    }
                    // The target is a server, the peer an app node.
                    (true, false, Some(app)) => {
                        let server = t.ip.to_string();
                        self.add_rule(fault, app, dialled("OUTPUT", &server));
                        if !one_way {
                            self.add_rule(fault, app, dialled("INPUT", &server));
                        }
                    }
                    _ => {
                        self.add_rule(fault, t, drop("INPUT", "-s", ip));
                        if !one_way {
                            self.add_rule(fault, t, drop("OUTPUT", "-d", ip));
                        }
                    }
                }
            }
        }
    }

    /// Staged copying rules for a `duplicate` fault: each server, and each app node that has a
    /// container, copies the TCP segments it sends with probability `per_mille` / 1000, in its
    /// own namespace's mangle table (`TEE` with the segment's own destination as the copy's next
    /// hop: the gateway, where the proxies, the app nodes in this process and the nemesis are,
    /// and every other container, for replication, the Sentinels and the app nodes' direct
    /// connections). An app node behind a proxy sends to the gateway: its DNAT comes first.
    pub(super) fn stage_duplicate(&mut self, fault: Fault, per_mille: u16) {
        let p = format!("{:.3}", f64::from(per_mille) / 1000.0);
        let nodes = self.side(Side::Network);
        let mut to: Vec<String> = vec![self.apps.to_string()];
        to.extend(nodes.iter().map(|(_, n)| n.ip.to_string()));
        for (_, n) in &nodes {
            let own = n.ip.to_string();
            for dst in to.iter().filter(|d| **d != own) {
                let args = [
                    "POSTROUTING",
                    "-t",
                    "mangle",
                    "-p",
                    "tcp",
                    "-d",
                    dst,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "TEE",
                    "--gateway",
                    dst,
                ];
                self.add_rule(fault, n, args.iter().map(|a| a.to_string()).collect());
            }
        }
    }

    /// The connection that shows a cut between containers: from one side to a server on the
    /// other (app nodes listen on nothing, so when the peers are app nodes only, from a peer to
    /// the target).
    pub(super) fn cut_pair(&self, fault: &Fault, peers: Side) -> Option<CutPair<'a>> {
        let server = |(t, _): &(Target, &Node)| !matches!(t, Target::App(_));
        let target = self.side(fault.target);
        let peers: Vec<_> = self
            .side(peers)
            .into_iter()
            .filter(|(t, _)| !fault.target.contains(*t))
            .collect();
        Some(match peers.iter().find(|p| server(p)) {
            Some(p) => (*target.first()?, *p),
            None => (*peers.first()?, *target.iter().find(|t| server(t))?),
        })
    }

    /// Can `from` (a container) open a TCP connection to `to` within [`CONNECT_TIMEOUT`]?
    async fn reaches(from: &Node, to: &Node) -> Result<(), String> {
        let script = format!(
            "timeout {} bash -c 'exec 3<>/dev/tcp/{}/{}'",
            CONNECT_TIMEOUT.as_secs_f64(),
            to.ip,
            to.port
        );
        exec(from, &["bash", "-c", &script]).await.map(drop)
    }
}
