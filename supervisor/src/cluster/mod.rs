//! Cluster mode: membership in Redis, the consistent-hash ring, exactly-once claims
//! of occurrences, and change announcements.
//!
//! Every node's wheel holds every enabled job. When an occurrence comes due, only the
//! node that owns the job on its current view of the ring acts, and only after it has
//! claimed `(job id, scheduled instant)` with `SET … NX` in Redis; a node that loses the
//! claim does nothing. Views of the ring differ for a moment when nodes come and go, and
//! clocks differ, but a claim is won once. On top of Redis, each node remembers the exact
//! instants it claimed in the last [`REMEMBER_CLAIMS_MS`] and never claims them again,
//! so a Redis restart (which forgets the claims) cannot make a node re-run what it
//! already ran. (A "latest instant" floor would be wrong: a catch-up claims older
//! instants after newer ones.)
//!
//! Membership: each node runs one Lua script every [`HEARTBEAT_EVERY`] that records it
//! in a sorted set scored by Redis's own clock, drops members silent for [`NODE_TTL`],
//! and returns the live set — one round trip, no node clocks involved. A node that
//! cannot reach Redis, or does not see itself in the set, owns nothing and fires
//! nothing until it is back.
//!
//! This module never touches the store or the wheel directly: ownership changes and
//! announcements go to [`crate::service::Service`], which reloads and reschedules.

pub mod ring;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use ring::Ring;

use crate::runner::FireGate;

pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// A node silent this long is gone. Six heartbeats: a slow one or two do not flap.
pub const NODE_TTL: Duration = Duration::from_millis(3_000);
/// How long a claim is remembered in Redis: far longer than any catch-up looks back.
const CLAIM_TTL_MS: u64 = 15 * 60 * 1000;
/// How long a node remembers its own claims: longer than any catch-up looks back.
pub const REMEMBER_CLAIMS_MS: i64 = 2 * crate::service::TAKEOVER_LOOKBACK_MS;
/// Commands to Redis fail after this, so a dead Redis cannot stall a fire.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1_000);

const HEARTBEAT_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 20)
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {tostring(now)}
for i = 1, #m do out[#out + 1] = m[i] end
return out
"#;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub cluster: String,
    /// This node's name: unique in the cluster, stable across restarts if possible.
    pub node: String,
}

/// Keys and channels of one cluster, so that clusters sharing a Redis never meet.
#[derive(Debug, Clone)]
struct Keys {
    members: String,
    claim_prefix: String,
    channel: String,
}

impl Keys {
    fn new(cluster: &str) -> Keys {
        Keys {
            members: format!("traitor:{cluster}:members"),
            claim_prefix: format!("traitor:{cluster}:claim:"),
            channel: format!("traitor:{cluster}:jobs"),
        }
    }
}

/// A member of the cluster as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    /// Milliseconds since its last heartbeat, by Redis's clock.
    pub age_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct View {
    ring: Ring,
    members: Vec<Member>,
    healthy: bool,
    /// Why not healthy, for `/healthz`.
    problem: Option<String>,
    last_ok: Option<Instant>,
    /// When this node stopped being able to fire (Redis lost), Unix ms.
    unhealthy_since_ms: Option<i64>,
}

/// What changed in membership, for the service to act on.
#[derive(Debug, Clone)]
pub struct OwnershipChange {
    /// The ring before, or `None` if this node was not healthy (it owned nothing).
    pub before: Option<Ring>,
    /// The ring now; this node is healthy.
    pub after: Ring,
    /// From when occurrences of the gained jobs may have gone unhandled (Unix ms): when
    /// this node lost Redis, or when a departed peer may have stopped firing. A
    /// catch-up must reach back at least this far, whatever the store says was handled
    /// last (on-time fires resume at once and move that forward).
    pub gap_start_ms: i64,
}

#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    cfg: ClusterConfig,
    keys: Keys,
    client: redis::Client,
    conn: ConnectionManager,
    view: RwLock<View>,
    /// Instants this node claimed recently, per job.
    claimed: Mutex<HashMap<Arc<str>, BTreeSet<i64>>>,
}

impl Cluster {
    /// Connects lazily: the node starts even if Redis is down, and says so in `/healthz`.
    pub async fn new(cfg: ClusterConfig) -> anyhow::Result<Cluster> {
        let client = redis::Client::open(cfg.redis_url.as_str())
            .with_context(|| format!("bad Redis URL {:?}", cfg.redis_url))?;
        let mcfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), mcfg)
            .context("set up the Redis connection")?;
        Ok(Cluster(Arc::new(Inner {
            keys: Keys::new(&cfg.cluster),
            cfg,
            client,
            conn,
            view: RwLock::new(View {
                problem: Some("no heartbeat yet".into()),
                ..View::default()
            }),
            claimed: Mutex::new(HashMap::new()),
        })))
    }

    pub fn node(&self) -> &str {
        &self.0.cfg.node
    }

    pub fn cluster_name(&self) -> &str {
        &self.0.cfg.cluster
    }

    pub fn healthy(&self) -> bool {
        self.0.view.read().healthy
    }

    pub fn problem(&self) -> Option<String> {
        self.0.view.read().problem.clone()
    }

    pub fn members(&self) -> Vec<Member> {
        self.0.view.read().members.clone()
    }

    pub fn ring(&self) -> Ring {
        self.0.view.read().ring.clone()
    }

    /// Heartbeats until `stop` fires; sends every ownership change. Returns after
    /// leaving the membership set, so that others take over at once.
    pub async fn heartbeat_loop(
        self,
        changes: mpsc::UnboundedSender<OwnershipChange>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let script = redis::Script::new(HEARTBEAT_LUA);
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let mut conn = self.0.conn.clone();
            let res: redis::RedisResult<Vec<String>> = script
                .key(&self.0.keys.members)
                .arg(&self.0.cfg.node)
                .arg(NODE_TTL.as_millis() as u64)
                .invoke_async(&mut conn)
                .await;
            match res.map_err(|e| e.to_string()).and_then(parse_members) {
                Ok(members) => self.seen(members, &changes),
                Err(e) => self.lost(format!("cannot reach Redis: {e}")),
            }
        }
        let mut conn = self.0.conn.clone();
        let _: redis::RedisResult<i64> = redis::cmd("ZREM")
            .arg(&self.0.keys.members)
            .arg(&self.0.cfg.node)
            .query_async(&mut conn)
            .await;
        self.lost("left the cluster".into());
        tracing::info!(node = %self.0.cfg.node, "left the cluster");
    }

    fn seen(&self, members: Vec<Member>, changes: &mpsc::UnboundedSender<OwnershipChange>) {
        let me = &self.0.cfg.node;
        let in_set = members.iter().any(|m| &m.node == me);
        let names: Vec<String> = members.iter().map(|m| m.node.clone()).collect();
        let mut v = self.0.view.write();
        if !in_set {
            drop(v);
            self.lost("this node is not in the live set (heartbeat too slow?)".into());
            return;
        }
        let ring = Ring::new(&names);
        let before = v.healthy.then(|| v.ring.clone());
        let changed = before.as_ref() != Some(&ring);
        let now = crate::scheduler::now_ms();
        let gap_start_ms = match v.unhealthy_since_ms {
            Some(t) if !v.healthy => t,
            // A peer that left may have stopped firing up to a TTL (plus a heartbeat
            // and some slack) before the set showed it.
            _ => now - (NODE_TTL + HEARTBEAT_EVERY).as_millis() as i64 - 1_000,
        };
        if !v.healthy {
            tracing::info!(node = %me, nodes = ?ring.nodes(), "in the cluster: firing my share");
        } else if changed {
            tracing::info!(node = %me, nodes = ?ring.nodes(), "membership changed");
        }
        v.ring = ring.clone();
        v.members = members;
        v.healthy = true;
        v.problem = None;
        v.last_ok = Some(Instant::now());
        v.unhealthy_since_ms = None;
        drop(v);
        if changed {
            let _ = changes.send(OwnershipChange {
                before,
                after: ring,
                gap_start_ms,
            });
        }
    }

    fn lost(&self, why: String) {
        let mut v = self.0.view.write();
        if v.healthy {
            tracing::warn!(node = %self.0.cfg.node, reason = %why, "out of the cluster: firing nothing until back");
            // The last moment this node could still have fired: its last good heartbeat.
            let since_ok = v
                .last_ok
                .map(|t| t.elapsed().as_millis() as i64)
                .unwrap_or(0);
            v.unhealthy_since_ms = Some(crate::scheduler::now_ms() - since_ok);
        }
        v.healthy = false;
        v.problem = Some(why);
    }

    /// Announces a change of a job (after it is stored).
    pub fn announce(&self, job_id: &str, version: u64) {
        let mut conn = self.0.conn.clone();
        let channel = self.0.keys.channel.clone();
        let payload = format!("{version} {job_id}");
        tokio::spawn(async move {
            let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not announce a job change; peers will reconcile");
            }
        });
    }

    /// Listens for announcements until `stop`; reconnects with backoff. Sends
    /// `Some((id, version))` per announcement and `None` after every (re)connect, when
    /// messages may have been lost.
    pub async fn listen_loop(
        self,
        out: mpsc::UnboundedSender<Option<(String, u64)>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use futures_util::StreamExt;
        let mut delay = Duration::from_millis(100);
        loop {
            let sub = async {
                let mut ps = self.0.client.get_async_pubsub().await?;
                ps.subscribe(&self.0.keys.channel).await?;
                redis::RedisResult::Ok(ps)
            };
            let ps = tokio::select! {
                r = tokio::time::timeout(REDIS_TIMEOUT * 2, sub) => r,
                _ = stop.changed() => return,
            };
            match ps {
                Ok(Ok(ps)) => {
                    delay = Duration::from_millis(100);
                    let _ = out.send(None);
                    let mut stream = ps.into_on_message();
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(m) => {
                                    let payload: String = m.get_payload().unwrap_or_default();
                                    if let Some((v, id)) = payload.split_once(' ')
                                        && let Ok(v) = v.parse::<u64>()
                                    {
                                        let _ = out.send(Some((id.to_owned(), v)));
                                    }
                                }
                                None => break,
                            },
                            _ = stop.changed() => return,
                        }
                    }
                    tracing::warn!("lost the Redis subscription; reconnecting");
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to job changes yet"),
                Err(_) => tracing::debug!("subscribing to job changes timed out"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

impl Inner {
    fn remembers(&self, job_id: &str, instant_ms: i64) -> bool {
        self.claimed
            .lock()
            .get(job_id)
            .is_some_and(|set| set.contains(&instant_ms))
    }

    fn remember(&self, job_id: Arc<str>, instant_ms: i64) {
        let horizon = crate::scheduler::now_ms() - REMEMBER_CLAIMS_MS;
        let mut map = self.claimed.lock();
        let set = map.entry(job_id).or_default();
        set.insert(instant_ms);
        // Forget what no catch-up can reach any more (the set stays a few entries per
        // job per lookback).
        while set.first().is_some_and(|t| *t < horizon) {
            set.pop_first();
        }
    }
}

fn parse_members(raw: Vec<String>) -> Result<Vec<Member>, String> {
    let mut it = raw.into_iter();
    let now: i64 = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("heartbeat script returned no time")?;
    let rest: Vec<String> = it.collect();
    let mut members = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        let [node, score] = pair else {
            return Err("heartbeat script returned an odd list".into());
        };
        let seen: f64 = score
            .parse()
            .map_err(|_| format!("bad heartbeat score {score:?}"))?;
        members.push(Member {
            node: node.clone(),
            age_ms: (now as f64 - seen).max(0.0) as u64,
        });
    }
    Ok(members)
}

impl FireGate for Cluster {
    fn owns(&self, job_id: &str) -> bool {
        let v = self.0.view.read();
        v.healthy && v.ring.owner(job_id) == Some(self.0.cfg.node.as_str())
    }

    fn claim(
        &self,
        job_id: Arc<str>,
        instant_ms: i64,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        let inner = self.0.clone();
        Box::pin(async move {
            if inner.remembers(&job_id, instant_ms) {
                return false;
            }
            let key = format!("{}{}@{}", inner.keys.claim_prefix, job_id, instant_ms);
            let mut conn = inner.conn.clone();
            let won: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(&inner.cfg.node)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_TTL_MS)
                .query_async(&mut conn)
                .await;
            match won {
                Ok(Some(_)) => {
                    inner.remember(job_id, instant_ms);
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim an occurrence; not running it");
                    false
                }
            }
        })
    }
}

/// This node's default name: host and port, stable across restarts.
pub fn default_node_name(port: u16) -> String {
    format!("{}:{port}", hostname().unwrap_or_else(|| "node".into()))
}

/// This machine's host name, if it has a readable one.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_ages_from_redis_time() {
        let m = parse_members(vec![
            "10000".into(),
            "a".into(),
            "9500".into(),
            "b".into(),
            "1e4".into(),
        ])
        .unwrap();
        assert_eq!(
            m,
            vec![
                Member {
                    node: "a".into(),
                    age_ms: 500
                },
                Member {
                    node: "b".into(),
                    age_ms: 0
                }
            ]
        );
        assert!(parse_members(vec![]).is_err());
        assert!(parse_members(vec!["1".into(), "a".into()]).is_err());
    }
}
