//! `DispatchService` over gRPC: handlers' inbox and actions, dispatchers' queue and decisions.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use minyi_core::auth::{Claims, Role};
use minyi_core::event::timestamp;
use minyi_core::grpc::{Page, claims, invalid_argument, require_role};
use minyi_core::petition::{TicketStatus, Violations};
use minyi_core::pii::Keyring;
use minyi_core::store::{
    AuditPage, TicketQuery, TicketRecord, cursor_token, page_token, parse_page_token,
};
use minyi_proto::dispatch::dispatch_service_server::DispatchService;
use minyi_proto::dispatch::*;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, EngineError};
use crate::machine::{Actor, Command, Refusal};
use crate::view::{audit_entry, ticket_view};

#[derive(Clone)]
pub struct DispatchApi {
    engine: Engine,
    keyring: Keyring,
    shutdown: watch::Receiver<bool>,
    /// Where dispatchers' reclassifications are recorded as training examples.
    catalog: Option<std::sync::Arc<dyn minyi_core::store::CatalogStore>>,
}

impl DispatchApi {
    /// `shutdown` ends open inbox streams, so a graceful stop is not held up by them.
    pub fn new(engine: Engine, keyring: Keyring, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            engine,
            keyring,
            shutdown,
            catalog: None,
        }
    }

    /// Records each dispatcher's reclassification (a dispatch naming `item_code`) as a training
    /// example in `store` (see [`crate::training`]).
    pub fn with_catalog_store(
        mut self,
        store: std::sync::Arc<dyn minyi_core::store::CatalogStore>,
    ) -> Self {
        self.catalog = Some(store);
        self
    }

    /// The ticket `ticket` names, if the caller may read it: any dispatch role, a handler
    /// only for tickets its unit leads or co-handles (a refusal is audited).
    async fn readable(&self, who: &Claims, ticket: &str) -> Result<TicketRecord, Status> {
        require_role(
            who,
            &[
                Role::Handler,
                Role::Dispatcher,
                Role::Arbitrator,
                Role::Supervisor,
                Role::Admin,
            ],
            "read dispatch records",
        )?;
        let t = self.engine.store.get_ticket(ticket.trim()).await?;
        if who.role == Role::Handler {
            let unit = who.unit.clone().unwrap_or_default();
            if !t.dispatch.as_ref().is_some_and(|d| d.involves(&unit)) {
                let lead = t.dispatch.as_ref().map(|d| d.lead_unit.clone());
                let why = match lead {
                    Some(l) => format!(
                        "this ticket is assigned to {}, not to you ({unit})",
                        crate::view::unit_name(&self.engine.catalog.current(), &l)
                    ),
                    None => format!("this ticket is not assigned to you ({unit})"),
                };
                self.engine
                    .audit_refusal(&t, "read", &actor(who), &why)
                    .await;
                return Err(Status::permission_denied(why));
            }
        }
        Ok(t)
    }

    fn view(&self, t: &TicketRecord, role: Role) -> DispatchTicket {
        ticket_view(
            t,
            role,
            &self.keyring,
            &self.engine.catalog.current(),
            &AuditPage::default(),
        )
    }

    async fn act(
        &self,
        who: &Claims,
        ticket: &str,
        cmd: Command,
        expected_version: i64,
    ) -> Result<Response<DispatchTicket>, Status> {
        if ticket.trim().is_empty() {
            let mut v = Violations::default();
            v.add("ticket", "give a ticket id or tracking number");
            return Err(invalid_argument(&v));
        }
        let actor = actor(who);
        match self
            .engine
            .apply(ticket.trim(), &cmd, &actor, expected_version, None)
            .await
        {
            Ok(t) => Ok(Response::new(self.view(&t, who.role))),
            Err(e) => Err(status(e)),
        }
    }

    fn handler_unit(who: &Claims) -> Result<String, Status> {
        require_role(who, &[Role::Handler], "read a unit inbox")?;
        who.unit
            .clone()
            .ok_or_else(|| Status::permission_denied("this handler token names no unit"))
    }
}

fn actor(who: &Claims) -> Actor {
    Actor {
        sub: who.sub.clone(),
        role: who.role,
        unit: who.unit.clone(),
    }
}

/// The one mapping of engine errors to gRPC statuses.
pub fn status(e: EngineError) -> Status {
    match e {
        EngineError::Refused(Refusal::Denied(why)) => Status::permission_denied(why),
        EngineError::Refused(Refusal::Illegal { state, message }) => {
            Status::failed_precondition(format!("ticket is {state}: {message}"))
        }
        EngineError::Refused(Refusal::Invalid(fields)) => {
            let mut v = Violations::default();
            for (f, d) in fields {
                v.add(&f, d);
            }
            invalid_argument(&v)
        }
        EngineError::Conflict { expected, current } => Status::aborted(format!(
            "the ticket changed since you read it (version {expected}, now {current}); reload and retry"
        )),
        EngineError::AlreadyApplied => Status::already_exists("already applied"),
        EngineError::Store(e) => e.into(),
    }
}

type InboxStream = Pin<Box<dyn Stream<Item = Result<InboxEntry, Status>> + Send>>;

/// A request's page size: `default` for 0, at most 500.
fn page_size(n: u32, default: usize) -> usize {
    match n {
        0 => default,
        n => (n as usize).min(500),
    }
}

fn bad_page_token() -> Status {
    let mut v = Violations::default();
    v.add("page_token", "not a token this service issued");
    invalid_argument(&v)
}

fn page_after(token: &str) -> Result<Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    parse_page_token(token).map(Some).ok_or_else(bad_page_token)
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    type WatchInboxStream = InboxStream;

    async fn watch_inbox(
        &self,
        request: Request<WatchInboxRequest>,
    ) -> Result<Response<Self::WatchInboxStream>, Status> {
        let who = claims(&request)?;
        let unit = Self::handler_unit(&who)?;
        let key = format!("{unit}/{}", who.sub);
        let state = self.engine.routing_state.clone();
        let mut cursor = match request.get_ref().after_cursor {
            c if c < 0 => state.cursor(&key).await.unwrap_or(0),
            c => c,
        };
        let store = self.engine.store.clone();
        let written = self.engine.inbox_written.clone();
        let mut shutdown = self.shutdown.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let notified = written.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let batch = match store.inbox(&unit, cursor, 100).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                for e in &batch {
                    let (title, tracking, accept_by) =
                        match store.get_ticket(&e.ticket_id.to_string()).await {
                            Ok(t) => (
                                t.title.clone(),
                                t.tracking_number.clone(),
                                t.dispatch.and_then(|d| d.accept_by),
                            ),
                            Err(_) => Default::default(),
                        };
                    let entry = InboxEntry {
                        cursor: e.seq,
                        ticket_id: e.ticket_id.to_string(),
                        tracking_number: tracking,
                        kind: e.kind.clone(),
                        at: Some(timestamp(e.at)),
                        title,
                        accept_by: accept_by.map(timestamp),
                    };
                    if tx.send(Ok(entry)).await.is_err() {
                        return;
                    }
                    cursor = e.seq;
                }
                if !batch.is_empty() {
                    if let Err(e) = state.set_cursor(&key, cursor).await {
                        tracing::debug!(error = %e, "inbox cursor not remembered");
                    }
                    continue;
                }
                // Other processes' commits are seen by polling; this process's at once.
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_inbox(
        &self,
        request: Request<ListInboxRequest>,
    ) -> Result<Response<ListInboxResponse>, Status> {
        let who = claims(&request)?;
        let unit = Self::handler_unit(&who)?;
        let r = request.into_inner();
        let limit = page_size(r.page_size, 50);
        let mut query = TicketQuery {
            unit: Some(unit),
            limit: limit + 1,
            after: page_after(&r.page_token)?,
            ..TicketQuery::default()
        };
        let mut out = Page::new(limit);
        // The cursor of the last ticket on the page.
        let mut last = None;
        let mut next = String::new();
        // State filters apply after the unit filter; keep reading pages until this one fills.
        loop {
            let page = self.engine.store.list_tickets(&query).await?;
            let full = page.len() == query.limit;
            for t in &page {
                let state = t.dispatch.as_ref().map_or(0, |d| d.state.to_proto());
                if r.states.is_empty() || r.states.contains(&state) {
                    if !out.push(self.view(t, who.role)) {
                        next = last.map_or_else(|| page_token(t), cursor_token);
                        break;
                    }
                    last = Some((t.received_at, t.id));
                }
            }
            if !next.is_empty() || !full {
                break;
            }
            query.after = page.last().map(|t| (t.received_at, t.id));
        }
        Ok(Response::new(ListInboxResponse {
            tickets: out.entries,
            next_page_token: next,
        }))
    }

    async fn get_ticket(
        &self,
        request: Request<GetTicketRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let t = self.readable(&who, &request.get_ref().ticket).await?;
        let audit = AuditPage::newest(self.engine.store.as_ref(), t.id).await?;
        Ok(Response::new(ticket_view(
            &t,
            who.role,
            &self.keyring,
            &self.engine.catalog.current(),
            &audit,
        )))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let from = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse::<u64>().map_err(|_| bad_page_token())?
        };
        let limit = page_size(r.page_size, 100);
        let t = self.readable(&who, &r.ticket).await?;
        let page = self
            .engine
            .store
            .audit_page(t.id, Some(from), limit)
            .await?
            .fit();
        let end = page.first + page.entries.len() as u64;
        Ok(Response::new(ListAuditResponse {
            entries: page.entries.iter().map(audit_entry).collect(),
            next_page_token: if end < page.total {
                end.to_string()
            } else {
                String::new()
            },
            total: page.total,
        }))
    }

    async fn accept(
        &self,
        request: Request<AcceptRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        self.act(&who, &r.ticket, Command::Accept, r.expected_version)
            .await
    }

    async fn r#return(
        &self,
        request: Request<ReturnRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Return {
            reason: r.reason,
            catalog_rule: r.catalog_rule,
        };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn add_co_handlers(
        &self,
        request: Request<AddCoHandlersRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::AddCoHandlers { units: r.units };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn whistle(
        &self,
        request: Request<WhistleRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Whistle {
            units: r.units,
            note: r.note,
        };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn add_progress(
        &self,
        request: Request<AddProgressRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Progress { note: r.note };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn request_extension(
        &self,
        request: Request<RequestExtensionRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::RequestExtension {
            working_days: r.working_days,
            reason: r.reason,
        };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn pause_for_citizen(
        &self,
        request: Request<PauseForCitizenRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Pause { reason: r.reason };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Resume { note: r.note };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Complete { reply: r.reply };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, Status> {
        let who = claims(&request)?;
        require_role(
            &who,
            &[Role::Dispatcher, Role::Arbitrator, Role::Admin],
            "read the dispatch queue",
        )?;
        let r = request.into_inner();
        let limit = page_size(r.page_size, 50);
        let tickets = self
            .engine
            .store
            .list_tickets(&TicketQuery {
                status: Some(TicketStatus::NeedsDispatcher),
                limit: limit + 1,
                after: page_after(&r.page_token)?,
                ..TicketQuery::default()
            })
            .await?;
        let (tickets, next_page_token) =
            Page::fill(limit, &tickets, |t| self.view(t, who.role), page_token);
        let unit_load = self.engine.routing_state.loads().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unit loads unavailable");
            Default::default()
        });
        Ok(Response::new(ListQueueResponse {
            tickets,
            next_page_token,
            unit_load: unit_load.into_iter().collect(),
        }))
    }

    async fn dispatch(
        &self,
        request: Request<DispatchRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let item_code = r.item_code.trim().to_owned();
        let next_suggestion = r.use_next_suggestion;
        let cmd = Command::Dispatch {
            lead_unit: r.lead_unit.trim().to_owned(),
            co_units: r.co_units,
            use_next_suggestion: r.use_next_suggestion,
            item_code: item_code.clone(),
            note: r.note,
        };
        let done = self.act(&who, &r.ticket, cmd, r.expected_version).await?;
        // A dispatcher who names the item, or sends a returned ticket on to the next
        // suggestion (its matter), corrects the classifier: learn from it.
        let t = done.get_ref();
        let (label, source) = if !item_code.is_empty() {
            (item_code, "dispatcher")
        } else if next_suggestion {
            let item = t.routing.as_ref().map(|r| r.item_code.clone());
            (item.unwrap_or_default(), "next_suggestion")
        } else {
            (String::new(), "")
        };
        if let Some(store) = self.catalog.as_deref().filter(|_| !label.is_empty()) {
            let extra = serde_json::json!({"source": source, "ticket": t.tracking_number});
            if let Err(e) = crate::training::record(store, &t.text, &label, extra).await {
                tracing::warn!(error = %e, "could not record the reclassification for training");
            }
        }
        Ok(done)
    }

    async fn decide_extension(
        &self,
        request: Request<DecideExtensionRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::DecideExtension {
            approve: r.approve,
            note: r.note,
        };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn record_callback(
        &self,
        request: Request<RecordCallbackRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Callback {
            rating: r.rating.trim().to_owned(),
            cause: r.cause.trim().to_owned(),
            note: r.note,
        };
        self.act(&who, &r.ticket, cmd, r.expected_version).await
    }

    async fn archive(
        &self,
        request: Request<ArchiveRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        self.act(&who, &r.ticket, Command::Archive, r.expected_version)
            .await
    }
}
