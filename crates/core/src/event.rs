//! Building and reading bus events (`minyi.events.v1.Event`).

use chrono::{DateTime, Utc};
use minyi_proto::events::{Event, event::Body};
use prost::Message as _;
use uuid::Uuid;

use crate::bus::Message;

/// Routing keys, one per event body.
pub mod keys {
    pub const TICKET_RECEIVED: &str = "ticket.received";
    pub const FOLLOW_UP_ADDED: &str = "ticket.follow_up_added";
    pub const ROUTED: &str = "ticket.routed";
    pub const NEEDS_DISPATCHER: &str = "ticket.needs_dispatcher";
    pub const DUPLICATE_LINKED: &str = "ticket.duplicate_linked";
    pub const DISPATCHED: &str = "ticket.dispatched";
    pub const ACCEPTED: &str = "ticket.accepted";
    pub const RETURNED: &str = "ticket.returned";
    pub const CO_HANDLERS_ADDED: &str = "ticket.co_handlers_added";
    pub const WHISTLED: &str = "ticket.whistled";
    pub const PROGRESS: &str = "ticket.progress";
    pub const EXTENSION_REQUESTED: &str = "ticket.extension_requested";
    pub const EXTENSION_DECIDED: &str = "ticket.extension_decided";
    pub const PAUSED: &str = "ticket.paused";
    pub const RESUMED: &str = "ticket.resumed";
    pub const COMPLETED: &str = "ticket.completed";
    pub const CALLED_BACK: &str = "ticket.called_back";
    pub const REOPENED: &str = "ticket.reopened";
    pub const ARCHIVED: &str = "ticket.archived";
    pub const SLA_WARNING: &str = "ticket.sla_warning";
    pub const OVERDUE: &str = "ticket.overdue";
    pub const ESCALATED: &str = "ticket.escalated";
    pub const ARBITRATED: &str = "ticket.arbitrated";
    /// Every dispatch step, for consumers that follow a ticket's whole life.
    pub const DISPATCH_ALL: [&str; 14] = [
        DISPATCHED,
        ACCEPTED,
        RETURNED,
        CO_HANDLERS_ADDED,
        WHISTLED,
        PROGRESS,
        EXTENSION_REQUESTED,
        EXTENSION_DECIDED,
        PAUSED,
        RESUMED,
        COMPLETED,
        CALLED_BACK,
        REOPENED,
        ARCHIVED,
    ];
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

pub fn routing_key(body: &Body) -> &'static str {
    match body {
        Body::Received(_) => keys::TICKET_RECEIVED,
        Body::FollowUpAdded(_) => keys::FOLLOW_UP_ADDED,
        Body::Routed(_) => keys::ROUTED,
        Body::NeedsDispatcher(_) => keys::NEEDS_DISPATCHER,
        Body::DuplicateLinked(_) => keys::DUPLICATE_LINKED,
        Body::DispatchChanged(d) => keys::DISPATCH_ALL
            .iter()
            .find(|k| k.strip_prefix("ticket.") == Some(d.action.as_str()))
            .copied()
            .unwrap_or("ticket.dispatch_changed"),
        Body::SlaAlert(a) if a.level == "overdue" => keys::OVERDUE,
        Body::SlaAlert(_) => keys::SLA_WARNING,
        Body::ArbitrationChanged(a) if a.action == "arbitrated" => keys::ARBITRATED,
        Body::ArbitrationChanged(_) => keys::ESCALATED,
    }
}

/// Wraps a body in an [`Event`] with a fresh id, ready for the outbox.
pub fn new_event(ticket_id: Uuid, at: DateTime<Utc>, body: Body) -> Message {
    let event_id = Uuid::now_v7();
    let key = routing_key(&body);
    let mut headers = std::collections::BTreeMap::new();
    crate::trace_context::inject_current(&mut headers);
    let event = Event {
        event_id: event_id.to_string(),
        ticket_id: ticket_id.to_string(),
        occurred_at: Some(timestamp(at)),
        body: Some(body),
    };
    Message {
        event_id,
        routing_key: key.to_owned(),
        payload: event.encode_to_vec(),
        headers,
    }
}

/// Decodes a bus payload; `None` for bytes that are not an event (poison).
pub fn decode(payload: &[u8]) -> Option<Event> {
    Event::decode(payload).ok()
}

/// A stored routing decision as its proto message.
pub fn routing_proto(r: &crate::store::RoutingRecord) -> minyi_proto::common::Routing {
    minyi_proto::common::Routing {
        decision: r.decision.clone(),
        item_code: r.item_code.clone(),
        item_name: r.item_name.clone(),
        lead_unit: r.lead_unit.clone(),
        co_units: r.co_units.clone(),
        grade: r.grade.clone(),
        confidence: r.confidence,
        suggestions: r
            .suggestions
            .iter()
            .map(|s| minyi_proto::common::Suggestion {
                item_code: s.item_code.clone(),
                item_name: s.item_name.clone(),
                path: s.path.clone(),
                unit: s.unit.clone(),
                confidence: s.confidence,
            })
            .collect(),
        street: r.street.clone(),
        community: r.community.clone(),
        reason: r.reason.clone(),
        model_version: r.model_version.clone(),
        catalog_version: r.catalog_version.clone(),
        accept_hours: r.accept_hours,
        respond_hours: r.respond_hours,
        complete_days: r.complete_days,
        duplicate_of: r.duplicate_of.clone(),
        routed_at: r.routed_at.map(timestamp),
    }
}
