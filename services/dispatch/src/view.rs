//! Tickets as dispatch shows them: unit names, deadlines, history; personal data masked.

use minyi_catalog::Catalog;
use minyi_core::auth::Role;
use minyi_core::event::{routing_proto, timestamp};
use minyi_core::pii::{Keyring, mask_id_number, mask_name, mask_phone};
use minyi_core::store::{AuditPage, AuditRecord, TicketRecord};
use minyi_proto::common::{Caller, FollowUp};
use minyi_proto::dispatch::{
    Alert, Arbitration, AuditEntry, Callback, CoHandler, DispatchTicket, Extension, Note, Pause,
    ReturnEntry,
};

pub fn unit_name(catalog: &Catalog, code: &str) -> String {
    catalog
        .units()
        .get(code)
        .map_or_else(String::new, |u| u.name.clone())
}

pub fn audit_entry(a: &AuditRecord) -> AuditEntry {
    AuditEntry {
        at: Some(timestamp(a.at)),
        actor: a.actor.clone(),
        role: a.role.clone(),
        unit: a.unit.clone(),
        action: a.action.clone(),
        from_state: a.from_state.clone(),
        to_state: a.to_state.clone(),
        reason: a.reason.clone(),
        allowed: a.allowed,
    }
}

pub fn ticket_view(
    t: &TicketRecord,
    role: Role,
    keyring: &Keyring,
    catalog: &Catalog,
    audit: &AuditPage,
) -> DispatchTicket {
    let open = |sealed: &Option<String>, mask: fn(&str) -> String| -> String {
        let Some(sealed) = sealed else {
            return String::new();
        };
        match keyring.open(sealed) {
            Ok(plain) if role.sees_personal_data() => plain,
            Ok(plain) => mask(&plain),
            Err(e) => {
                tracing::error!(ticket_id = %t.id, error = %e, "cannot open sealed personal data");
                "<unreadable>".into()
            }
        }
    };
    let mut v = DispatchTicket {
        ticket_id: t.id.to_string(),
        tracking_number: t.tracking_number.clone(),
        status: t.status.to_proto(),
        version: t.version,
        title: t.title.clone(),
        text: t.text.clone(),
        address: t.address.clone(),
        caller: Some(Caller {
            anonymous: t.anonymous,
            name: open(&t.caller_name, mask_name),
            phone: open(&t.caller_phone, mask_phone),
            id_number: open(&t.caller_id_number, mask_id_number),
        }),
        received_at: Some(timestamp(t.received_at)),
        routing: t.routing.as_ref().map(routing_proto),
        follow_ups: t
            .follow_ups
            .iter()
            .map(|f| FollowUp {
                text: f.text.clone(),
                author: f.author.clone(),
                at: Some(timestamp(f.at)),
            })
            .collect(),
        audit: audit.entries.iter().map(audit_entry).collect(),
        audit_total: audit.total,
        ..DispatchTicket::default()
    };
    if let Some(d) = &t.dispatch {
        v.state = d.state.to_proto();
        v.lead_unit = d.lead_unit.clone();
        v.lead_unit_name = unit_name(catalog, &d.lead_unit);
        v.co_handlers = d
            .co_handlers
            .iter()
            .map(|c| CoHandler {
                unit: c.unit.clone(),
                unit_name: unit_name(catalog, &c.unit),
                whistled: c.whistled,
                accepted: c.accepted_at.is_some(),
            })
            .collect();
        v.manual = d.manual;
        v.dispatched_at = Some(timestamp(d.dispatched_at));
        v.accept_by = d.accept_by.map(timestamp);
        v.complete_by = d.complete_by.map(timestamp);
        v.accepted_at = d.accepted_at.map(timestamp);
        v.completed_at = d.completed_at.map(timestamp);
        v.reply = d.reply.clone();
        v.returns = d
            .returns
            .iter()
            .map(|r| ReturnEntry {
                unit: r.unit.clone(),
                reason: r.reason.clone(),
                catalog_rule: r.catalog_rule.clone(),
                at: Some(timestamp(r.at)),
            })
            .collect();
        v.progress = d
            .progress
            .iter()
            .map(|n| Note {
                unit: n.unit.clone(),
                author: n.author.clone(),
                text: n.text.clone(),
                at: Some(timestamp(n.at)),
            })
            .collect();
        v.extensions = d
            .extensions
            .iter()
            .map(|e| Extension {
                working_days: e.working_days,
                reason: e.reason.clone(),
                decision: match e.approved {
                    None => "pending",
                    Some(true) => "approved",
                    Some(false) => "refused",
                }
                .into(),
                note: e.note.clone(),
                requested_at: Some(timestamp(e.requested_at)),
            })
            .collect();
        v.callback = d.callback.as_ref().map(|c| Callback {
            rating: c.rating.clone(),
            cause: c.cause.clone(),
            note: c.note.clone(),
            at: Some(timestamp(c.at)),
        });
        v.redo_count = d.redo_count;
        v.no_return = d.no_return;
        v.arbitration = d.arbitration.as_ref().map(|a| Arbitration {
            reason: a.reason.clone(),
            escalated_at: Some(timestamp(a.escalated_at)),
            due: a.due.map(timestamp),
            candidates: a.candidates.clone(),
            ruling: a.ruling.clone(),
            decided_by: a.decided_by.clone(),
            decided_at: a.decided_at.map(timestamp),
            catalog_version: a.catalog_version.clone(),
        });
        v.alerts = d
            .alerts
            .iter()
            .map(|a| Alert {
                clock: a.clock.clone(),
                level: a.level.clone(),
                fraction: a.fraction,
                due: Some(timestamp(a.due)),
                at: Some(timestamp(a.at)),
            })
            .collect();
        v.paused = d.paused().is_some();
        v.pauses = d
            .pauses
            .iter()
            .map(|p| Pause {
                reason: p.reason.clone(),
                by: p.by.clone(),
                from: Some(timestamp(p.from)),
                to: p.to.map(timestamp),
                working_seconds: p.working_secs,
            })
            .collect();
    }
    v
}
