//! Tickets as callers see them: personal data opened for roles that need it, masked otherwise.

use minyi_core::auth::Role;
use minyi_core::event::timestamp;
use minyi_core::pii::{Keyring, mask_id_number, mask_name, mask_phone};
use minyi_core::store::TicketRecord;
use minyi_proto::common::{Caller, FollowUp, GeoPoint, Location};
use minyi_proto::intake::Ticket;

/// Converts a stored ticket for a caller with `role`.
pub fn ticket_view(t: &TicketRecord, role: Role, keyring: &Keyring) -> Ticket {
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
    Ticket {
        id: t.id.to_string(),
        tracking_number: t.tracking_number.clone(),
        status: t.status.to_proto(),
        channel: t.channel.to_proto(),
        title: t.title.clone(),
        text: t.text.clone(),
        caller: Some(Caller {
            anonymous: t.anonymous,
            name: open(&t.caller_name, mask_name),
            phone: open(&t.caller_phone, mask_phone),
            id_number: open(&t.caller_id_number, mask_id_number),
        }),
        location: Some(Location {
            address: t.address.clone(),
            point: t
                .latitude
                .zip(t.longitude)
                .map(|(latitude, longitude)| GeoPoint {
                    latitude,
                    longitude,
                }),
        }),
        event_time: t.event_time.map(timestamp),
        attachment_urls: t.attachment_urls.clone(),
        received_at: Some(timestamp(t.received_at)),
        follow_ups: t
            .follow_ups
            .iter()
            .map(|f| FollowUp {
                text: f.text.clone(),
                author: f.author.clone(),
                at: Some(timestamp(f.at)),
            })
            .collect(),
        received_by: t.received_by.clone(),
        routing: t.routing.as_ref().map(minyi_core::event::routing_proto),
    }
}
