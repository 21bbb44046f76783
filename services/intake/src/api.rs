//! `IntakeService` over gRPC.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use minyi_core::auth::Role;
use minyi_core::clock::Clock;
use minyi_core::event::{from_timestamp, new_event, timestamp};
use minyi_core::grpc::{Page, claims, invalid_argument, require_role};
use minyi_core::petition::{
    CallerInput, Channel, IntakeLimits, NewPetition, SubmissionInput, TicketStatus, Violations,
};
use minyi_core::pii::Keyring;
use minyi_core::store::{FollowUpRecord, TicketQuery, TicketRecord, TicketStore};
use minyi_proto::events::event::Body;
use minyi_proto::events::{FollowUpAdded, TicketReceived};
use minyi_proto::intake::intake_service_server::IntakeService;
use minyi_proto::intake::{
    AddFollowUpRequest, GetTicketRequest, ListTicketsRequest, ListTicketsResponse,
    SubmitPetitionRequest, SubmitPetitionResponse, Ticket,
};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use crate::view::ticket_view;

/// Roles that record petitions and follow-ups.
const WRITERS: &[Role] = &[Role::Agent, Role::Admin];
/// Roles that read tickets through intake (handlers read theirs through dispatch).
const READERS: &[Role] = &[
    Role::Agent,
    Role::Dispatcher,
    Role::Arbitrator,
    Role::Supervisor,
    Role::Admin,
];

/// The intake gRPC service.
#[derive(Clone)]
pub struct IntakeApi {
    store: Arc<dyn TicketStore>,
    keyring: Keyring,
    limits: IntakeLimits,
    clock: Arc<dyn Clock>,
    /// Wakes the relay as soon as something is committed to the outbox.
    outbox_written: Arc<Notify>,
}

impl IntakeApi {
    pub fn new(
        store: Arc<dyn TicketStore>,
        keyring: Keyring,
        limits: IntakeLimits,
        clock: Arc<dyn Clock>,
        outbox_written: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            keyring,
            limits,
            clock,
            outbox_written,
        }
    }

    fn seal(&self, value: Option<String>) -> Result<Option<String>, Status> {
        value
            .map(|v| self.keyring.seal(&v))
            .transpose()
            .map_err(|e| {
                tracing::error!(error = %e, "sealing failed");
                Status::internal("internal error")
            })
    }

    /// Validates, seals and stores a petition. Also used by the Open311 endpoint.
    pub async fn submit(
        &self,
        input: SubmissionInput,
        received_by: &str,
    ) -> Result<(TicketRecord, bool), SubmitError> {
        let now = self.clock.now();
        let p = NewPetition::parse(input, &self.limits, now).map_err(SubmitError::Invalid)?;
        let id = Uuid::now_v7();
        let record = TicketRecord {
            id,
            tracking_number: String::new(),
            status: TicketStatus::Received,
            channel: p.channel,
            title: p.title.clone(),
            text: p.text.clone(),
            anonymous: p.anonymous,
            caller_name: self.seal(p.caller.name)?,
            caller_phone: self.seal(p.caller.phone)?,
            caller_id_number: self.seal(p.caller.id_number)?,
            address: p.address.clone(),
            latitude: p.point.map(|x| x.0),
            longitude: p.point.map(|x| x.1),
            event_time: p.event_time,
            attachment_urls: p.attachment_urls,
            idempotency_key: p.idempotency_key,
            received_at: now,
            received_by: received_by.to_owned(),
            follow_ups: vec![],
            routing: None,
            dispatch: None,
            version: 0,
        };
        // The event carries no personal data: other services never need it.
        let event = new_event(
            id,
            now,
            Body::Received(TicketReceived {
                tracking_number: String::new(),
                channel: p.channel.to_proto(),
                title: p.title,
                text: p.text,
                address: p.address,
                point: p
                    .point
                    .map(|(latitude, longitude)| minyi_proto::common::GeoPoint {
                        latitude,
                        longitude,
                    }),
                received_at: Some(timestamp(now)),
                anonymous: p.anonymous,
            }),
        );
        let (ticket, created) = self.store.create_ticket(record, vec![event]).await?;
        if created {
            self.outbox_written.notify_one();
            minyi_core::metrics::TICKETS_RECEIVED
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok((ticket, created))
    }

    /// The configured limits submissions are checked against (Open311 checks the same).
    pub fn limits(&self) -> &IntakeLimits {
        &self.limits
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn store(&self) -> &Arc<dyn TicketStore> {
        &self.store
    }
}

/// Why a submission failed.
#[derive(Debug)]
pub enum SubmitError {
    Invalid(Violations),
    Status(Status),
}

impl From<Status> for SubmitError {
    fn from(s: Status) -> Self {
        SubmitError::Status(s)
    }
}

impl From<minyi_core::store::StoreError> for SubmitError {
    fn from(e: minyi_core::store::StoreError) -> Self {
        SubmitError::Status(e.into())
    }
}

impl From<SubmitError> for Status {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(v) => invalid_argument(&v),
            SubmitError::Status(s) => s,
        }
    }
}

fn encode_cursor(t: &TicketRecord) -> String {
    minyi_core::store::page_token(t)
}

fn decode_cursor(token: &str) -> Option<(DateTime<Utc>, Uuid)> {
    minyi_core::store::parse_page_token(token)
}

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    #[instrument(skip_all, fields(ticket_id, created, trace_id), err(level = "info"))]
    async fn submit_petition(
        &self,
        request: Request<SubmitPetitionRequest>,
    ) -> Result<Response<SubmitPetitionResponse>, Status> {
        // A front end that traces its calls continues its trace here.
        minyi_core::trace_context::follow_grpc(&tracing::Span::current(), request.metadata());
        let who = claims(&request)?;
        require_role(&who, WRITERS, "submit petitions")?;
        let r = request.into_inner();
        let location = r.location.unwrap_or_default();
        let input = SubmissionInput {
            channel: r.channel,
            text: r.text,
            title: r.title,
            caller: r.caller.map(|c| CallerInput {
                anonymous: c.anonymous,
                name: c.name,
                phone: c.phone,
                id_number: c.id_number,
            }),
            address: location.address,
            point: location.point.map(|p| (p.latitude, p.longitude)),
            event_time: r.event_time.as_ref().and_then(from_timestamp),
            attachment_urls: r.attachment_urls,
            idempotency_key: r.idempotency_key,
        };
        let (ticket, created) = self.submit(input, &who.sub).await?;
        tracing::Span::current().record("ticket_id", tracing::field::display(ticket.id));
        tracing::Span::current().record("created", created);
        Ok(Response::new(SubmitPetitionResponse {
            ticket: Some(ticket_view(&ticket, who.role, &self.keyring)),
            created,
        }))
    }

    #[instrument(skip_all, err(level = "info"))]
    async fn get_ticket(
        &self,
        request: Request<GetTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let who = claims(&request)?;
        require_role(&who, READERS, "read tickets through intake")?;
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            let mut v = Violations::default();
            v.add("id", "must be a ticket id or tracking number");
            return Err(invalid_argument(&v));
        }
        let t = self.store.get_ticket(id.trim()).await?;
        Ok(Response::new(ticket_view(&t, who.role, &self.keyring)))
    }

    #[instrument(skip_all, err(level = "info"))]
    async fn list_tickets(
        &self,
        request: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let who = claims(&request)?;
        require_role(&who, READERS, "list tickets")?;
        let r = request.into_inner();
        let mut v = Violations::default();
        if !(0..=500).contains(&r.page_size) {
            v.add("page_size", "must be between 1 and 500 (0 means 50)");
        }
        let after = if r.page_token.is_empty() {
            None
        } else {
            let c = decode_cursor(&r.page_token);
            if c.is_none() {
                v.add("page_token", "not a token from a previous response");
            }
            c
        };
        let status = match r.status {
            0 => None,
            s => {
                let parsed = TicketStatus::from_proto(s);
                if parsed.is_none() {
                    v.add("status", format!("unknown status {s}"));
                }
                parsed
            }
        };
        let channel = match r.channel {
            0 => None,
            c => {
                let parsed = Channel::from_proto(c);
                if parsed.is_none() {
                    v.add("channel", format!("unknown channel {c}"));
                }
                parsed
            }
        };
        if !v.is_empty() {
            return Err(invalid_argument(&v));
        }
        let limit = if r.page_size == 0 {
            50
        } else {
            r.page_size as usize
        };
        let query = TicketQuery {
            status,
            channel,
            received_after: r.received_after.as_ref().and_then(from_timestamp),
            received_before: r.received_before.as_ref().and_then(from_timestamp),
            unit: None,
            limit: limit + 1,
            after,
            ..TicketQuery::default()
        };
        let tickets = self.store.list_tickets(&query).await?;
        let (tickets, next_page_token) = Page::fill(
            limit,
            &tickets,
            |t| ticket_view(t, who.role, &self.keyring),
            encode_cursor,
        );
        Ok(Response::new(ListTicketsResponse {
            tickets,
            next_page_token,
        }))
    }

    #[instrument(skip_all, err(level = "info"))]
    async fn add_follow_up(
        &self,
        request: Request<AddFollowUpRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let who = claims(&request)?;
        require_role(&who, WRITERS, "add follow-ups")?;
        let r = request.into_inner();
        let mut v = Violations::default();
        let text = r.text.trim().to_owned();
        if text.is_empty() {
            v.add("text", "must not be empty");
        } else if text.chars().count() > self.limits.max_text_chars {
            v.add(
                "text",
                format!("longer than {} characters", self.limits.max_text_chars),
            );
        }
        if r.id.trim().is_empty() {
            v.add("id", "must be a ticket id or tracking number");
        }
        if !v.is_empty() {
            return Err(invalid_argument(&v));
        }
        let existing = self.store.get_ticket(r.id.trim()).await?;
        // Checked before the write: two follow-ups at the same moment may both pass it, which
        // a bound on size does not mind.
        let held: usize = existing
            .follow_ups
            .iter()
            .map(|f| f.text.chars().count())
            .sum();
        if existing.follow_ups.len() >= self.limits.max_follow_ups
            || held + text.chars().count() > self.limits.max_follow_up_chars
        {
            return Err(Status::failed_precondition(format!(
                "ticket {} is full: it holds {} follow-ups of {held} characters and takes at \
                 most {} follow-ups of {} characters in all; record the call as a new petition",
                existing.tracking_number,
                existing.follow_ups.len(),
                self.limits.max_follow_ups,
                self.limits.max_follow_up_chars,
            )));
        }
        let now = self.clock.now();
        let event = new_event(
            existing.id,
            now,
            Body::FollowUpAdded(FollowUpAdded { text: text.clone() }),
        );
        let f = FollowUpRecord {
            text,
            author: who.sub.clone(),
            at: now,
        };
        let t = self
            .store
            .add_follow_up(existing.id, f, vec![event])
            .await?;
        self.outbox_written.notify_one();
        Ok(Response::new(ticket_view(&t, who.role, &self.keyring)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_roundtrip_and_reject_garbage() {
        let t = TicketRecord {
            id: Uuid::now_v7(),
            tracking_number: String::new(),
            status: TicketStatus::Received,
            channel: Channel::App,
            title: String::new(),
            text: String::new(),
            anonymous: true,
            caller_name: None,
            caller_phone: None,
            caller_id_number: None,
            address: String::new(),
            latitude: None,
            longitude: None,
            event_time: None,
            attachment_urls: vec![],
            idempotency_key: None,
            received_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            received_by: String::new(),
            follow_ups: vec![],
            routing: None,
            dispatch: None,
            version: 0,
        };
        assert_eq!(
            decode_cursor(&encode_cursor(&t)),
            Some((t.received_at, t.id))
        );
        assert_eq!(decode_cursor("not-a-cursor"), None);
    }
}
