//! Routing state for fast reads: each ticket's current assignment, the open load of every
//! unit and the handlers' inbox cursors. Redis in production, memory in embedded mode.
//! PostgreSQL stays the source of truth: when the state is lost (FLUSHALL, a new Redis) the
//! reconciler rebuilds it from the ticket store ([`rebuild_if_lost`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use minyi_core::store::{DispatchState, TicketQuery, TicketRecord, TicketStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("routing state unavailable: {0}")]
pub struct StateError(pub String);

/// A ticket's current assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assignment {
    pub lead_unit: String,
    pub units: Vec<String>,
    pub state: String,
    /// Counts towards its units' open load.
    pub open: bool,
}

impl Assignment {
    pub fn of(t: &TicketRecord) -> Option<Assignment> {
        let d = t.dispatch.as_ref()?;
        Some(Assignment {
            lead_unit: d.lead_unit.clone(),
            units: d.units().map(str::to_owned).collect(),
            state: d.state.as_str().to_owned(),
            open: matches!(d.state, DispatchState::Dispatched | DispatchState::Accepted),
        })
    }
}

#[async_trait]
pub trait RoutingState: Send + Sync + 'static {
    /// Records the ticket's current assignment (idempotent).
    async fn record(&self, t: &TicketRecord) -> Result<(), StateError>;
    async fn assignment(&self, ticket_id: Uuid) -> Result<Option<Assignment>, StateError>;
    /// Open tickets (dispatched or accepted) per unit, lead or co-handler.
    async fn loads(&self) -> Result<BTreeMap<String, u64>, StateError>;
    /// The last inbox cursor delivered to `who`.
    async fn cursor(&self, who: &str) -> Result<i64, StateError>;
    async fn set_cursor(&self, who: &str, cursor: i64) -> Result<(), StateError>;
    /// Whether the state was built (false after it was lost).
    async fn is_built(&self) -> Result<bool, StateError>;
    async fn mark_built(&self) -> Result<(), StateError>;
}

/// Rebuilds the routing state from the store when it was lost. Returns the tickets recorded.
pub async fn rebuild_if_lost(
    state: &dyn RoutingState,
    store: &dyn TicketStore,
) -> Result<Option<usize>, String> {
    if state.is_built().await.map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let mut query = TicketQuery {
        limit: 500,
        ..TicketQuery::default()
    };
    let mut n = 0;
    loop {
        let page = store
            .list_tickets(&query)
            .await
            .map_err(|e| e.to_string())?;
        for t in page.iter().filter(|t| t.dispatch.is_some()) {
            state.record(t).await.map_err(|e| e.to_string())?;
            n += 1;
        }
        match page.last() {
            Some(last) if page.len() == query.limit => {
                query.after = Some((last.received_at, last.id))
            }
            _ => break,
        }
    }
    state.mark_built().await.map_err(|e| e.to_string())?;
    tracing::info!(tickets = n, "routing state rebuilt from the ticket store");
    Ok(Some(n))
}

#[derive(Default)]
struct Inner {
    assignments: HashMap<Uuid, Assignment>,
    open: HashMap<String, HashSet<Uuid>>,
    cursors: HashMap<String, i64>,
    built: bool,
}

/// The embedded routing state.
#[derive(Default)]
pub struct MemoryRoutingState {
    inner: Mutex<Inner>,
}

impl MemoryRoutingState {
    /// Forgets everything, as a flushed Redis would (tests).
    pub fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Inner::default();
    }
}

#[async_trait]
impl RoutingState for MemoryRoutingState {
    async fn record(&self, t: &TicketRecord) -> Result<(), StateError> {
        let Some(a) = Assignment::of(t) else {
            return Ok(());
        };
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = s.assignments.get(&t.id).cloned() {
            for u in &old.units {
                if let Some(set) = s.open.get_mut(u) {
                    set.remove(&t.id);
                }
            }
        }
        if a.open {
            for u in &a.units {
                s.open.entry(u.clone()).or_default().insert(t.id);
            }
        }
        s.assignments.insert(t.id, a);
        Ok(())
    }

    async fn assignment(&self, ticket_id: Uuid) -> Result<Option<Assignment>, StateError> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(s.assignments.get(&ticket_id).cloned())
    }

    async fn loads(&self) -> Result<BTreeMap<String, u64>, StateError> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(s.open
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    async fn cursor(&self, who: &str) -> Result<i64, StateError> {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(s.cursors.get(who).copied().unwrap_or(0))
    }

    async fn set_cursor(&self, who: &str, cursor: i64) -> Result<(), StateError> {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let c = s.cursors.entry(who.to_owned()).or_default();
        *c = (*c).max(cursor);
        Ok(())
    }

    async fn is_built(&self) -> Result<bool, StateError> {
        Ok(self.inner.lock().unwrap_or_else(|e| e.into_inner()).built)
    }

    async fn mark_built(&self) -> Result<(), StateError> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).built = true;
        Ok(())
    }
}

/// Routing state in Redis: `{prefix}:assign` (hash ticket → assignment JSON),
/// `{prefix}:open:{unit}` (set of open ticket ids), `{prefix}:units` (set of units seen),
/// `{prefix}:cursor` (hash who → cursor), `{prefix}:built` (marker).
#[derive(Clone)]
pub struct RedisRoutingState {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

fn err(e: redis::RedisError) -> StateError {
    StateError(e.to_string())
}

/// Moves a ticket between units' open sets and stores its assignment, atomically.
/// KEYS: assign hash, units set. ARGV: prefix, ticket id, assignment JSON, open (0/1),
/// units...
const RECORD_LUA: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old then
  local a = cjson.decode(old)
  for _, u in ipairs(a.units) do redis.call('SREM', ARGV[1] .. ':open:' .. u, ARGV[2]) end
end
for i = 5, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
  if ARGV[4] == '1' then redis.call('SADD', ARGV[1] .. ':open:' .. ARGV[i], ARGV[2]) end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"#;

impl RedisRoutingState {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StateError> {
        Self::connect_client(redis::Client::open(url).map_err(err)?, prefix).await
    }

    /// Connects with a client built elsewhere (`rediss://` with a CA of its own).
    pub async fn connect_client(client: redis::Client, prefix: &str) -> Result<Self, StateError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(std::time::Duration::from_secs(5)))
            .set_connection_timeout(Some(std::time::Duration::from_secs(5)));
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(Self {
            conn,
            prefix: format!("{prefix}:routing"),
        })
    }
}

#[async_trait]
impl RoutingState for RedisRoutingState {
    async fn record(&self, t: &TicketRecord) -> Result<(), StateError> {
        let Some(a) = Assignment::of(t) else {
            return Ok(());
        };
        let json = serde_json::to_string(&a).map_err(|e| StateError(e.to_string()))?;
        let mut conn = self.conn.clone();
        let script = redis::Script::new(RECORD_LUA);
        let mut inv = script.key(format!("{}:assign", self.prefix));
        inv.key(format!("{}:units", self.prefix))
            .arg(&self.prefix)
            .arg(t.id.to_string())
            .arg(json)
            .arg(if a.open { "1" } else { "0" });
        for u in &a.units {
            inv.arg(u);
        }
        inv.invoke_async::<i64>(&mut conn).await.map_err(err)?;
        Ok(())
    }

    async fn assignment(&self, ticket_id: Uuid) -> Result<Option<Assignment>, StateError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = redis::cmd("HGET")
            .arg(format!("{}:assign", self.prefix))
            .arg(ticket_id.to_string())
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| StateError(e.to_string())))
            .transpose()
    }

    async fn loads(&self) -> Result<BTreeMap<String, u64>, StateError> {
        let mut conn = self.conn.clone();
        let units: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}:units", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        if units.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut pipe = redis::pipe();
        for u in &units {
            pipe.scard(format!("{}:open:{u}", self.prefix));
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await.map_err(err)?;
        Ok(units
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn cursor(&self, who: &str) -> Result<i64, StateError> {
        let mut conn = self.conn.clone();
        let c: Option<i64> = redis::cmd("HGET")
            .arg(format!("{}:cursor", self.prefix))
            .arg(who)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(c.unwrap_or(0))
    }

    async fn set_cursor(&self, who: &str, cursor: i64) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        redis::cmd("HSET")
            .arg(format!("{}:cursor", self.prefix))
            .arg(who)
            .arg(cursor)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }

    async fn is_built(&self) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(format!("{}:built", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(err)
    }

    async fn mark_built(&self) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{}:built", self.prefix))
            .arg(1)
            .query_async::<()>(&mut conn)
            .await
            .map_err(err)
    }
}
