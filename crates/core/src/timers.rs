//! The timer port: due-time ordered timers, claimed atomically by any number of workers.
//!
//! A claim does not delete a timer: it pushes its due time forward by a lease. The worker
//! removes it with [`TimerStore::complete`] once its effect is committed; if the worker dies
//! first, the timer comes due again when the lease runs out. Timers therefore fire at least
//! once, and handlers must be idempotent. PostgreSQL stays the source of truth: after the timer
//! store loses its data, services reschedule from there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("timer store unavailable: {0}")]
    Unavailable(String),
}

/// A timer: a unique id (e.g. `sla:{ticket}:{kind}`), its due time and an opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub id: String,
    pub due: DateTime<Utc>,
    pub payload: String,
}

#[async_trait]
pub trait TimerStore: Send + Sync + 'static {
    /// Creates or moves a timer.
    async fn schedule(&self, timer: &Timer) -> Result<(), TimerError>;
    /// Removes a timer; absent ids are fine.
    async fn cancel(&self, id: &str) -> Result<(), TimerError>;
    /// Schedules `schedule` and cancels `cancel` (Redis: one atomic round trip). An id in
    /// both is scheduled.
    async fn update(&self, schedule: &[Timer], cancel: &[String]) -> Result<(), TimerError> {
        for id in cancel {
            if !schedule.iter().any(|t| &t.id == id) {
                self.cancel(id).await?;
            }
        }
        for timer in schedule {
            self.schedule(timer).await?;
        }
        Ok(())
    }
    /// Claims up to `limit` timers due at `now`, leasing each for `lease`.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Timer>, TimerError>;
    /// Deletes a fired timer whose effect is committed.
    async fn complete(&self, id: &str) -> Result<(), TimerError>;
    /// Pending timers (claimed ones included).
    async fn pending(&self) -> Result<u64, TimerError>;
    /// False until [`TimerStore::mark_built`], and again after the store lost its data
    /// (FLUSHALL, a new Redis): the signal to reschedule everything from PostgreSQL.
    async fn is_built(&self) -> Result<bool, TimerError>;
    async fn mark_built(&self) -> Result<(), TimerError>;
}

/// In-memory timers for the embedded mode.
#[derive(Debug, Default)]
pub struct MemoryTimers {
    inner: Mutex<MemoryTimersInner>,
}

#[derive(Debug, Default)]
struct MemoryTimersInner {
    by_due: BTreeSet<(i64, String)>,
    timers: HashMap<String, (i64, String)>,
    built: bool,
}

impl MemoryTimersInner {
    fn remove(&mut self, id: &str) {
        if let Some((due, _)) = self.timers.remove(id) {
            self.by_due.remove(&(due, id.to_owned()));
        }
    }
}

impl MemoryTimers {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryTimersInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl TimerStore for MemoryTimers {
    async fn schedule(&self, timer: &Timer) -> Result<(), TimerError> {
        let mut g = self.lock();
        g.remove(&timer.id);
        let due = timer.due.timestamp_millis();
        g.by_due.insert((due, timer.id.clone()));
        g.timers
            .insert(timer.id.clone(), (due, timer.payload.clone()));
        Ok(())
    }

    async fn cancel(&self, id: &str) -> Result<(), TimerError> {
        self.lock().remove(id);
        Ok(())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Timer>, TimerError> {
        let mut g = self.lock();
        let now_ms = now.timestamp_millis();
        let due: Vec<(i64, String)> = g
            .by_due
            .iter()
            .take_while(|(d, _)| *d <= now_ms)
            .take(limit)
            .cloned()
            .collect();
        let leased_until = now_ms + lease.as_millis() as i64;
        let mut out = Vec::with_capacity(due.len());
        for (d, id) in due {
            g.by_due.remove(&(d, id.clone()));
            g.by_due.insert((leased_until, id.clone()));
            if let Some(entry) = g.timers.get_mut(&id) {
                entry.0 = leased_until;
                out.push(Timer {
                    id,
                    due: DateTime::from_timestamp_millis(d).unwrap_or(now),
                    payload: entry.1.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn complete(&self, id: &str) -> Result<(), TimerError> {
        self.lock().remove(id);
        Ok(())
    }

    async fn pending(&self) -> Result<u64, TimerError> {
        Ok(self.lock().timers.len() as u64)
    }

    async fn is_built(&self) -> Result<bool, TimerError> {
        Ok(self.lock().built)
    }

    async fn mark_built(&self) -> Result<(), TimerError> {
        self.lock().built = true;
        Ok(())
    }
}

impl MemoryTimers {
    /// Forgets every timer, as a flushed Redis would (tests).
    pub fn clear(&self) {
        *self.lock() = MemoryTimersInner::default();
    }
}

/// Timers in Redis: a sorted set `{prefix}:timers` (member = id, score = due ms) and a hash
/// `{prefix}:timer-payloads`. Claiming is one Lua script, so concurrent workers never both
/// claim the same timer within a lease.
#[derive(Clone)]
pub struct RedisTimers {
    conn: redis::aio::ConnectionManager,
    zset: String,
    hash: String,
    marker: String,
    claim: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for RedisTimers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTimers")
            .field("zset", &self.zset)
            .finish()
    }
}

const CLAIM_LUA: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  table.insert(out, id)
  table.insert(out, due[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], id) or '')
end
return out
";

fn redis_err(e: redis::RedisError) -> TimerError {
    TimerError::Unavailable(e.to_string())
}

impl RedisTimers {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, TimerError> {
        Self::connect_client(redis::Client::open(url).map_err(redis_err)?, prefix).await
    }

    /// Connects with a client built elsewhere (`rediss://` with a CA of its own).
    pub async fn connect_client(client: redis::Client, prefix: &str) -> Result<Self, TimerError> {
        // redis-rs gives up on a response after 500 ms by default; under load that is an
        // error storm, so the timeout is set deliberately.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_err)?;
        Ok(Self {
            conn,
            zset: format!("{prefix}:timers"),
            hash: format!("{prefix}:timer-payloads"),
            marker: format!("{prefix}:timers-built"),
            claim: std::sync::Arc::new(redis::Script::new(CLAIM_LUA)),
        })
    }
}

#[async_trait]
impl TimerStore for RedisTimers {
    async fn schedule(&self, timer: &Timer) -> Result<(), TimerError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset(&self.hash, &timer.id, &timer.payload)
            .ignore()
            .zadd(&self.zset, &timer.id, timer.due.timestamp_millis())
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn cancel(&self, id: &str) -> Result<(), TimerError> {
        self.complete(id).await
    }

    async fn update(&self, schedule: &[Timer], cancel: &[String]) -> Result<(), TimerError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let cancelled: Vec<&String> = cancel
            .iter()
            .filter(|id| !schedule.iter().any(|t| &t.id == *id))
            .collect();
        if !cancelled.is_empty() {
            pipe.zrem(&self.zset, &cancelled)
                .ignore()
                .hdel(&self.hash, &cancelled)
                .ignore();
        }
        if !schedule.is_empty() {
            let payloads: Vec<(&str, &str)> = schedule
                .iter()
                .map(|t| (t.id.as_str(), t.payload.as_str()))
                .collect();
            let dues: Vec<(i64, &str)> = schedule
                .iter()
                .map(|t| (t.due.timestamp_millis(), t.id.as_str()))
                .collect();
            pipe.hset_multiple(&self.hash, &payloads)
                .ignore()
                .zadd_multiple(&self.zset, &dues)
                .ignore();
        }
        if cancelled.is_empty() && schedule.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(redis_err)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Timer>, TimerError> {
        let mut conn = self.conn.clone();
        let now_ms = now.timestamp_millis();
        let raw: Vec<String> = self
            .claim
            .key(&self.zset)
            .key(&self.hash)
            .arg(now_ms)
            .arg(limit)
            .arg(now_ms + lease.as_millis() as i64)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(raw
            .chunks_exact(3)
            .map(|c| Timer {
                id: c[0].clone(),
                due: c[1]
                    .parse::<f64>()
                    .ok()
                    .and_then(|ms| DateTime::from_timestamp_millis(ms as i64))
                    .unwrap_or(now),
                payload: c[2].clone(),
            })
            .collect())
    }

    async fn complete(&self, id: &str) -> Result<(), TimerError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .zrem(&self.zset, id)
            .ignore()
            .hdel(&self.hash, id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn pending(&self) -> Result<u64, TimerError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(&self.zset)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn is_built(&self) -> Result<bool, TimerError> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(&self.marker)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn mark_built(&self) -> Result<(), TimerError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(&self.marker)
            .arg(1)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }
}
