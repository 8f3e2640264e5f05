//! Sentinel discovery: asking each Sentinel who the master is (newest election epoch first),
//! and a watcher that drops the connection when a Sentinel announces `+switch-master`.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{info, warn};

use redis::RedisError;

use super::{connect_error, Access, Redis, Target};

impl Redis {
    /// `SENTINEL master <name>` on the Sentinel at `s`: the master's address and the
    /// configuration epoch it was elected in, or what went wrong in words.
    pub(super) async fn ask_sentinel(
        &self,
        s: &str,
        master_name: &str,
    ) -> Result<(String, u64), String> {
        let mut sc = self
            .open(self.access.sentinel(s))
            .await
            .map_err(|e| connect_error(&e, true))?;
        let fields: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(master_name)
            .query_async(&mut sc)
            .await
            .map_err(|e| {
                if e.to_string().contains("No such master") {
                    format!(
                        "unknown master {master_name:?}: this Sentinel monitors no master by that name (check the name in its `sentinel monitor` line)"
                    )
                } else {
                    e.to_string()
                }
            })?;
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1).cloned())
                .ok_or_else(|| format!("SENTINEL MASTER {master_name:?} has no {name} field"))
        };
        let epoch = field("config-epoch")?.parse().unwrap_or(0);
        Ok((format!("{}:{}", field("ip")?, field("port")?), epoch))
    }

    /// What every reachable Sentinel names as the master, the newest configuration epoch first
    /// (then the Sentinels' order), one entry per address: after a failover the Sentinels that
    /// have not heard of it yet still name the old master, which says `master` to ROLE until it
    /// is demoted. The leader's newer epoch wins. Also what went wrong with the others.
    pub(super) async fn sentinel_views(
        &self,
        sentinels: &[String],
        master_name: &str,
    ) -> (Vec<(String, u64, String)>, Vec<String>) {
        let mut answers = Vec::new();
        let mut why = Vec::new();
        for s in sentinels {
            match self.ask_sentinel(s, master_name).await {
                Ok((addr, epoch)) => answers.push((addr, epoch, s.clone())),
                Err(e) => why.push(format!("sentinel {s}: {e}")),
            }
        }
        (newest_first(answers), why)
    }

    /// Whether the Sentinels now name (by the newest epoch) a master other than ours.
    pub(super) async fn master_moved(&self) -> bool {
        let Target::Sentinel {
            sentinels,
            master_name,
        } = &self.target
        else {
            return false;
        };
        let Some(current) = self.master().await else {
            return false;
        };
        let (views, _) = self.sentinel_views(sentinels, master_name).await;
        views.first().is_some_and(|(best, _, _)| *best != current)
    }
}

/// (master, epoch, the Sentinel that said so), one per master, the newest epoch first, then in
/// the Sentinels' order.
pub(super) fn newest_first(answers: Vec<(String, u64, String)>) -> Vec<(String, u64, String)> {
    let mut views: Vec<(String, u64, String)> = Vec::new();
    for (addr, epoch, s) in answers {
        match views.iter_mut().find(|v| v.0 == addr) {
            Some(v) if epoch > v.1 => *v = (addr, epoch, s),
            Some(_) => {}
            None => views.push((addr, epoch, s)),
        }
    }
    views.sort_by_key(|v| std::cmp::Reverse(v.1));
    views
}

/// Replies this many times late in a row, and the master is re-resolved (a connection error or
/// `READONLY` re-resolves at once).
pub const TIMEOUTS_TO_RESOLVE: u32 = 3;

/// How often the watcher asks a Sentinel who the master is, besides listening.
const POLL: Duration = Duration::from_secs(2);

/// Listens for `+switch-master` on the Sentinels and drops the connection when one arrives.
pub(super) async fn watch_switches(redis: Weak<Redis>, sentinels: Vec<String>, access: Access) {
    let mut i = 0usize;
    loop {
        let s = &sentinels[i % sentinels.len()];
        i += 1;
        let sub = async {
            let mut ps = access.sentinel(s)?.get_async_pubsub().await?;
            ps.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(ps)
        }
        .await;
        match sub {
            Ok(mut ps) => {
                let mut stream = ps.on_message();
                loop {
                    // Pub/sub for speed, a poll as the backstop: a Sentinel cut off silently
                    // never publishes, and its connection may never fail.
                    let msg = tokio::select! {
                        m = stream.next() => m.map(Some),
                        () = tokio::time::sleep(POLL) => Some(None),
                    };
                    let Some(msg) = msg else { break };
                    let Some(r) = redis.upgrade() else { return };
                    let moved = match msg {
                        Some(m) => {
                            let payload: String = m.get_payload().unwrap_or_default();
                            info!(sentinel = %s, event = %payload, "+switch-master: re-resolving");
                            true
                        }
                        None => {
                            let moved = r.master_moved().await;
                            if moved {
                                info!("a sentinel names another master: re-resolving");
                            }
                            moved
                        }
                    };
                    if moved {
                        // Now, not at the next command: an instance with nothing to send (a
                        // quiet `durable` invalidator) must still see the switch and replay
                        // the outbox window on the new master.
                        r.forget().await;
                        if let Err(e) = r.connection().await {
                            warn!(error = %e, "re-resolving after a switch failed; the next command retries");
                        }
                    }
                }
            }
            Err(e) => {
                warn!(sentinel = %s, error = %e, "cannot subscribe to +switch-master; trying the next sentinel")
            }
        }
        if redis.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    /// A Sentinel that has not heard of a failover yet still names the old master, which
    /// answers ROLE `master` until it is demoted: the leader's newer epoch goes first.
    #[test]
    fn the_newest_epoch_names_the_master() {
        let a = |addr: &str, epoch, s: &str| (addr.to_string(), epoch, s.to_string());
        let views = super::newest_first(vec![
            a("old:6379", 0, "s1"),
            a("new:6379", 1, "s2"),
            a("old:6379", 0, "s3"),
            a("new:6379", 1, "s3"),
        ]);
        assert_eq!(views, vec![a("new:6379", 1, "s2"), a("old:6379", 0, "s1")]);
        let same = super::newest_first(vec![a("m:1", 3, "s1"), a("m:2", 3, "s2")]);
        assert_eq!(same[0].0, "m:1", "ties keep the Sentinels' order");
    }
}
