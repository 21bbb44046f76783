//! The dashboard's state, shared by the consumer, the HTTP routes and the gRPC service: the
//! read model, the sources it is refreshed from, and the signal that tells open pages it moved.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use minyi_catalog::{Catalog, LiveCatalog};
use minyi_core::auth::{AuthError, Claims, Role, TokenAuthority};
use minyi_core::clock::Clock;
use minyi_core::store::{StoreError, TicketQuery, TicketRecord, TicketStore};
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::ApiError;
use crate::export::{Lang, TABLES};
use crate::facts::{Fact, needs_audit};
use crate::figures::{
    ArbitrationView, Breakdowns, Context, Figures, LeagueRow, Names, Options, TicketRow,
    TrendPoint, Volume,
};
use crate::filter::{Filter, RawFilter};
use crate::hotspots::{Hotspot, HotspotQuery, SimilarityCache, hotspots};
use crate::model::ReadModel;
use crate::worktime::WorkTime;

/// Roles that may see the dashboard.
pub const ROLES: [Role; 2] = [Role::Supervisor, Role::Admin];

/// Tickets per store page while loading.
const LOAD_PAGE: usize = 500;

/// Every figure of one page, for one filter (`GET /api/v1/dashboard/overview`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    /// False until the first load from the store has finished: figures may be partial.
    pub ready: bool,
    /// The read model's version; pages re-read when the stream announces a newer one.
    pub version: u64,
    /// Tickets in the read model (all dates, all filters).
    pub tickets_known: u64,
    pub filter: Filter,
    pub volume: Volume,
    pub figures: Figures,
    pub overdue: Vec<TicketRow>,
    pub at_risk: Vec<TicketRow>,
    pub arbitration: ArbitrationView,
    pub league: Vec<LeagueRow>,
    pub breakdowns: Breakdowns,
    pub trend: Vec<TrendPoint>,
    pub hotspot_query: HotspotQuery,
    pub hotspots: Vec<Hotspot>,
    pub options: Options,
}

/// Why a caller may not see the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("sign in: send `Authorization: Bearer <token>` or add `?token=<token>`")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("role `{0}` may not see the dashboard; allowed: supervisor, admin")]
    Forbidden(Role),
}

#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TicketStore>,
    /// Unit, item and category names: the version in force.
    catalog: LiveCatalog,
    work: WorkTime,
    clock: Arc<dyn Clock>,
    authority: TokenAuthority,
    model: RwLock<ReadModel>,
    /// Carries the model version; every open page's stream waits on it.
    changed: watch::Sender<u64>,
    similarity: SimilarityCache,
}

impl Dashboard {
    pub fn new(
        store: Arc<dyn TicketStore>,
        catalog: impl Into<LiveCatalog>,
        clock: Arc<dyn Clock>,
        authority: TokenAuthority,
    ) -> Dashboard {
        Dashboard {
            inner: Arc::new(Inner {
                store,
                catalog: catalog.into(),
                work: WorkTime::default(),
                clock,
                authority,
                model: RwLock::new(ReadModel::default()),
                changed: watch::channel(0).0,
                similarity: SimilarityCache::default(),
            }),
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.current()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn read(&self) -> RwLockReadGuard<'_, ReadModel> {
        self.inner.model.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, ReadModel> {
        self.inner.model.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every open page when the model moved.
    fn announce(&self, changed: bool) {
        if changed {
            let version = self.read().version();
            self.inner.changed.send_replace(version);
        }
    }

    /// A receiver that sees every new model version.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    pub fn ready(&self) -> bool {
        self.read().ready()
    }

    /// Marks the first load done.
    pub fn set_ready(&self) {
        self.write().set_ready();
        self.announce(true);
    }

    /// Checks a bearer token (`Bearer …` or bare) for a dashboard role.
    pub fn authorize(&self, token: Option<&str>) -> Result<Claims, AccessError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let token = token.ok_or(AccessError::Missing)?;
        let claims = self.inner.authority.verify(token).map_err(|e| match e {
            AuthError::Missing => AccessError::Missing,
            other => AccessError::Invalid(other.to_string()),
        })?;
        if ROLES.contains(&claims.role) {
            Ok(claims)
        } else {
            Err(AccessError::Forbidden(claims.role))
        }
    }

    async fn fact_of(&self, t: &TicketRecord) -> Result<Fact, StoreError> {
        let audit = if needs_audit(t) {
            Some(self.inner.store.audit_trail(t.id).await?)
        } else {
            None
        };
        Ok(Fact::from_record(
            t,
            audit.as_deref(),
            &self.inner.catalog.current(),
            &self.inner.work,
        ))
    }

    /// Open tickets past a deadline now (acceptance, first response or completion), and open
    /// tickets at risk of it, over the whole district whatever the date (the
    /// `minyi_tickets_overdue` and `minyi_tickets_at_risk` metrics; the same lists the page
    /// shows unfiltered).
    pub fn overdue_and_at_risk_now(&self) -> (usize, usize) {
        let now = self.now();
        let model = self.read();
        let filter = Filter::default_at(now);
        let catalog = self.inner.catalog.current();
        let cx = Context {
            model: &model,
            filter: &filter,
            now,
            catalog: &catalog,
            work: &self.inner.work,
        };
        let (overdue, at_risk) = cx.overdue_and_at_risk();
        (overdue.len(), at_risk.len())
    }

    /// Re-reads several tickets in one store read. Returns the ids the store does not have.
    pub async fn refresh_many(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let tickets = self.inner.store.get_tickets(ids).await?;
        let mut facts = Vec::with_capacity(tickets.len());
        for t in &tickets {
            facts.push(self.fact_of(t).await?);
        }
        let mut changed = false;
        {
            let mut model = self.write();
            for f in facts {
                changed |= model.upsert(f);
            }
        }
        self.announce(changed);
        let found: std::collections::HashSet<Uuid> = tickets.iter().map(|t| t.id).collect();
        Ok(ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect())
    }

    /// Reads every ticket from the store, newest first, page by page. Safe to run while events
    /// are applied: a fact is never replaced by an older version.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let mut after = None;
        let mut total = 0;
        loop {
            let page = self
                .inner
                .store
                .list_tickets(&TicketQuery {
                    limit: LOAD_PAGE,
                    after,
                    ..TicketQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.received_at, last.id));
            let mut facts = Vec::with_capacity(page.len());
            for t in &page {
                facts.push(self.fact_of(t).await?);
            }
            total += facts.len();
            let mut changed = false;
            {
                let mut model = self.write();
                for f in facts {
                    changed |= model.upsert(f);
                }
            }
            self.announce(changed);
            if page.len() < LOAD_PAGE {
                break;
            }
        }
        Ok(total)
    }

    /// Parses a filter (against the catalog, at the current time) and hotspot parameters,
    /// reporting every bad field of both.
    pub fn parse<'a>(
        &self,
        raw: &RawFilter,
        hotspot_pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Filter, HotspotQuery), ApiError> {
        match (
            Filter::parse(raw, self.now(), &self.inner.catalog.current()),
            HotspotQuery::parse(hotspot_pairs),
        ) {
            (Ok(f), Ok(q)) => Ok((f, q)),
            (f, q) => {
                let mut errors = f.err().unwrap_or_default();
                errors.extend(q.err().unwrap_or_default());
                Err(ApiError::Invalid(errors))
            }
        }
    }

    /// One table as CSV: `(file name, bytes)`.
    pub fn export(
        &self,
        table: &str,
        filter: &Filter,
        q: &HotspotQuery,
        lang: Lang,
    ) -> Result<(String, Vec<u8>), ApiError> {
        if !TABLES.contains(&table) {
            return Err(ApiError::NotFound(format!(
                "no table `{table}`; tables: {}",
                TABLES.join(", ")
            )));
        }
        let o = self.overview(filter, q);
        let csv = crate::export::table(&o, table)
            .ok_or_else(|| ApiError::NotFound(format!("no table `{table}`")))?
            .to_csv(lang)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((
            format!("minyi-{table}-{}_{}.csv", filter.from, filter.to),
            csv,
        ))
    }

    /// Every figure for `filter`.
    pub fn overview(&self, filter: &Filter, hotspot_query: &HotspotQuery) -> Overview {
        let now = self.now();
        let model = self.read();
        let catalog = self.inner.catalog.current();
        let cx = Context {
            model: &model,
            filter,
            now,
            catalog: &catalog,
            work: &self.inner.work,
        };
        let (overdue, at_risk) = cx.overdue_and_at_risk();
        Overview {
            generated_at: now,
            ready: model.ready(),
            version: model.version(),
            tickets_known: model.len() as u64,
            filter: filter.clone(),
            volume: cx.volume(),
            figures: cx.figures(),
            overdue,
            at_risk,
            arbitration: cx.arbitration(),
            league: cx.league(),
            breakdowns: cx.breakdowns(),
            trend: cx.trend(),
            hotspots: hotspots(
                &model,
                filter,
                hotspot_query,
                now,
                &Names(&catalog),
                &self.inner.similarity,
            ),
            hotspot_query: hotspot_query.clone(),
            options: cx.options(),
        }
    }

    /// Hotspots alone.
    pub fn hotspots(&self, filter: &Filter, q: &HotspotQuery) -> Vec<Hotspot> {
        let model = self.read();
        hotspots(
            &model,
            filter,
            q,
            self.now(),
            &Names(&self.inner.catalog.current()),
            &self.inner.similarity,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dashboard reads names and categories from the catalog in force: a category that a
    /// newly activated version adds is a valid filter at once.
    #[test]
    fn filters_follow_the_catalog_in_force() {
        let live = LiveCatalog::new(minyi_catalog::demo_slice());
        let dashboard = Dashboard::new(
            Arc::new(minyi_core::store::MemoryStore::ephemeral()),
            live.clone(),
            Arc::new(minyi_core::clock::SystemClock),
            TokenAuthority::new(b"a test secret of at least thirty-two bytes"),
        );
        let raw = RawFilter {
            category: "新设大类".into(),
            ..RawFilter::default()
        };
        assert!(dashboard.parse(&raw, []).is_err());
        let (_, mut items, units) = minyi_catalog::demo_slice().into_parts();
        items[0].path[0] = "新设大类".into();
        let mut next = Catalog::new("v2", items, units);
        next.version = "v2".into();
        live.replace(next);
        assert!(dashboard.parse(&raw, []).is_ok());
        assert_eq!(dashboard.catalog().version, "v2");
    }
}
