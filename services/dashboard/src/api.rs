//! `minyi.supervisor.v1.SupervisorService`: the dashboard's figures over gRPC, the same
//! computation as the JSON of the HTTP API.

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use minyi_core::event::timestamp;
use minyi_core::grpc::{claims, require_role};
use minyi_proto::supervisor as pb;
use minyi_proto::supervisor::supervisor_service_server::SupervisorService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::dashboard::{Dashboard, Overview, ROLES};
use crate::export::Lang;
use crate::figures::{ArbitrationRow, BreakdownRow, Mean, Rate, TicketRow};
use crate::filter::{Filter, RawFilter};
use crate::hotspots::{Hotspot, HotspotQuery};

/// Pause after a change before announcing it, so a burst becomes one message.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct SupervisorApi {
    dashboard: Dashboard,
    /// Open `WatchChanges` streams end when the process stops.
    shutdown: watch::Receiver<bool>,
}

impl SupervisorApi {
    pub fn new(dashboard: Dashboard, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            dashboard,
            shutdown,
        }
    }

    fn parse(
        &self,
        filter: Option<pb::Filter>,
        hotspots: Option<pb::HotspotParams>,
    ) -> Result<(Filter, HotspotQuery), Status> {
        let f = filter.unwrap_or_default();
        let raw = RawFilter {
            from: f.from,
            to: f.to,
            street: f.street,
            unit: f.unit,
            category: f.category,
        };
        let h = hotspots.unwrap_or_default();
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("days", h.days),
            ("window_days", h.window_days),
            ("min_size", h.min_size),
            ("limit", h.limit),
        ] {
            if v != 0 {
                pairs.push((k, v.to_string()));
            }
        }
        if h.threshold != 0.0 {
            pairs.push(("threshold", h.threshold.to_string()));
        }
        Ok(self
            .dashboard
            .parse(&raw, pairs.iter().map(|(k, v)| (*k, v.as_str())))?)
    }
}

fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    require_role(&claims(req)?, &ROLES, "see the dashboard")
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(timestamp(t))
}

fn rate(r: &Rate) -> Option<pb::Rate> {
    Some(pb::Rate {
        value: r.value,
        numerator: r.numerator,
        denominator: r.denominator,
    })
}

fn mean(m: &Mean) -> Option<pb::Mean> {
    Some(pb::Mean {
        value: m.value,
        count: m.count,
    })
}

fn ticket_row(r: &TicketRow) -> pb::TicketRow {
    pb::TicketRow {
        id: r.id.to_string(),
        tracking_number: r.tracking_number.clone(),
        excerpt: r.excerpt.clone(),
        category: r.category.clone(),
        item_name: r.item_name.clone(),
        street: r.street.clone(),
        street_name: r.street_name.clone(),
        community_name: r.community_name.clone(),
        lead_unit: r.lead_unit.clone(),
        lead_unit_name: r.lead_unit_name.clone(),
        state: r.state.clone(),
        clock: r.clock.clone(),
        due: r.due.and_then(ts),
        received_at: ts(r.received_at),
        dispatched_at: ts(r.dispatched_at),
        used: if r.used.is_finite() { r.used } else { 0.0 },
        overdue_working_hours: r.overdue_working_hours,
        supervised: r.supervised,
    }
}

fn arbitration_row(r: &ArbitrationRow) -> pb::ArbitrationRow {
    pb::ArbitrationRow {
        id: r.id.to_string(),
        tracking_number: r.tracking_number.clone(),
        excerpt: r.excerpt.clone(),
        category: r.category.clone(),
        street_name: r.street_name.clone(),
        returns: r.returns,
        source: r.source.clone(),
        reason: r.reason.clone(),
        candidate_units: r.candidate_units.clone(),
        escalated_at: r.escalated_at.and_then(ts),
        due: r.due.and_then(ts),
        owner_unit: r.owner_unit.clone(),
        owner_unit_name: r.owner_unit_name.clone(),
        ruling: r.ruling.clone(),
        catalog_version: r.catalog_version.clone(),
        arbitrated_at: r.arbitrated_at.and_then(ts),
    }
}

fn breakdown_row(r: &BreakdownRow) -> pb::BreakdownRow {
    pb::BreakdownRow {
        key: r.key.clone(),
        name: r.name.clone(),
        received: r.received,
        dispatched: r.dispatched,
        completed: r.completed,
        open: r.open,
        overdue: r.overdue,
        first_dispatch_accuracy: rate(&r.first_dispatch_accuracy),
        on_time_completion: rate(&r.on_time_completion),
        satisfaction_rate: rate(&r.satisfaction_rate),
    }
}

fn hotspot(h: &Hotspot) -> pb::Hotspot {
    pb::Hotspot {
        rank: h.rank,
        community: h.community.clone(),
        community_name: h.community_name.clone(),
        street: h.street.clone(),
        street_name: h.street_name.clone(),
        size: h.size,
        open: h.open,
        first_at: ts(h.first_at),
        last_at: ts(h.last_at),
        category: h.category.clone(),
        item_name: h.item_name.clone(),
        label: h.label.clone(),
        tickets: h
            .tickets
            .iter()
            .map(|t| pb::HotspotTicket {
                id: t.id.to_string(),
                tracking_number: t.tracking_number.clone(),
                excerpt: t.excerpt.clone(),
                received_at: ts(t.received_at),
                status: t.status.clone(),
                lead_unit: t.lead_unit.clone(),
                lead_unit_name: t.lead_unit_name.clone(),
            })
            .collect(),
    }
}

/// The overview as its proto message.
pub fn overview(o: &Overview) -> pb::Overview {
    let f = &o.figures;
    pb::Overview {
        generated_at: ts(o.generated_at),
        ready: o.ready,
        version: o.version,
        tickets_known: o.tickets_known,
        filter: Some(pb::Filter {
            from: o.filter.from.to_string(),
            to: o.filter.to.to_string(),
            street: o.filter.street.clone().unwrap_or_default(),
            unit: o.filter.unit.clone().unwrap_or_default(),
            category: o.filter.category.clone().unwrap_or_default(),
        }),
        volume: Some(pb::Volume {
            today: o.volume.today,
            this_week: o.volume.this_week,
            this_month: o.volume.this_month,
            in_range: o.volume.in_range,
        }),
        figures: Some(pb::Figures {
            received: f.received,
            dispatched: f.dispatched,
            completed: f.completed,
            open: f.open,
            overdue: f.overdue,
            linked_duplicates: f.linked_duplicates,
            waiting_for_dispatcher: f.waiting_for_dispatcher,
            first_dispatch_accuracy: rate(&f.first_dispatch_accuracy),
            avg_dispatch_hours: mean(&f.avg_dispatch_hours),
            avg_accept_hours: mean(&f.avg_accept_hours),
            on_time_completion: rate(&f.on_time_completion),
            avg_completion_working_days: mean(&f.avg_completion_working_days),
            response_rate: rate(&f.response_rate),
            resolution_rate: rate(&f.resolution_rate),
            satisfaction_rate: rate(&f.satisfaction_rate),
        }),
        overdue: o.overdue.iter().map(ticket_row).collect(),
        at_risk: o.at_risk.iter().map(ticket_row).collect(),
        arbitration_queue: o.arbitration.queue.iter().map(arbitration_row).collect(),
        arbitration_outcomes: o.arbitration.outcomes.iter().map(arbitration_row).collect(),
        league: o
            .league
            .iter()
            .map(|r| pb::LeagueRow {
                rank: r.rank,
                unit: r.unit.clone(),
                unit_name: r.unit_name.clone(),
                kind: r.kind.clone(),
                led: r.led,
                returns: r.returns,
                late: r.late,
                extensions: r.extensions,
                dissatisfied: r.dissatisfied,
                problems: r.problems,
                on_time_completion: rate(&r.on_time_completion),
                satisfaction_rate: rate(&r.satisfaction_rate),
            })
            .collect(),
        by_category: o.breakdowns.category.iter().map(breakdown_row).collect(),
        by_street: o.breakdowns.street.iter().map(breakdown_row).collect(),
        by_unit: o.breakdowns.unit.iter().map(breakdown_row).collect(),
        trend: o
            .trend
            .iter()
            .map(|p| pb::TrendPoint {
                date: p.date.to_string(),
                received: p.received,
                dispatched: p.dispatched,
                completed: p.completed,
                first_dispatch_accuracy: p.first_dispatch_accuracy,
                on_time_completion: p.on_time_completion,
            })
            .collect(),
        hotspots: o.hotspots.iter().map(hotspot).collect(),
    }
}

pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::Change, Status>> + Send>>;

#[tonic::async_trait]
impl SupervisorService for SupervisorApi {
    type WatchChangesStream = ChangeStream;

    #[tracing::instrument(skip_all, err)]
    async fn get_overview(
        &self,
        req: Request<pb::GetOverviewRequest>,
    ) -> Result<Response<pb::Overview>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let (filter, q) = self.parse(r.filter, r.hotspots)?;
        Ok(Response::new(overview(
            &self.dashboard.overview(&filter, &q),
        )))
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_hotspots(
        &self,
        req: Request<pb::ListHotspotsRequest>,
    ) -> Result<Response<pb::ListHotspotsResponse>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let (filter, q) = self.parse(r.filter, r.hotspots)?;
        Ok(Response::new(pb::ListHotspotsResponse {
            hotspots: self
                .dashboard
                .hotspots(&filter, &q)
                .iter()
                .map(hotspot)
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, err)]
    async fn export_table(
        &self,
        req: Request<pb::ExportTableRequest>,
    ) -> Result<Response<pb::ExportTableResponse>, Status> {
        authorize(&req)?;
        let r = req.into_inner();
        let (filter, q) = self.parse(r.filter, None)?;
        let table = r.table.strip_suffix(".csv").unwrap_or(&r.table);
        let (filename, csv) = self
            .dashboard
            .export(table, &filter, &q, Lang::parse(&r.lang))?;
        Ok(Response::new(pb::ExportTableResponse { filename, csv }))
    }

    #[tracing::instrument(skip_all, err)]
    async fn watch_changes(
        &self,
        req: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        authorize(&req)?;
        let changes = self.dashboard.changes();
        let first = Some(*changes.borrow());
        let stream = futures::stream::unfold(
            (changes, self.shutdown.clone(), first),
            |(mut changes, mut shutdown, first)| async move {
                if let Some(version) = first {
                    return Some((Ok(pb::Change { version }), (changes, shutdown, None)));
                }
                if *shutdown.borrow() {
                    return None;
                }
                tokio::select! {
                    r = changes.changed() => r.ok()?,
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
                tokio::time::sleep(DEBOUNCE).await;
                let version = *changes.borrow_and_update();
                Some((Ok(pb::Change { version }), (changes, shutdown, None)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
