//! `ArbitrationService` (快裁): the queue of hard tickets and the ruling, which may clarify the
//! catalog (a new catalog version) and records the ticket as training data.

use std::sync::Arc;

use minyi_catalog::store::{Clarification, ClarificationChange};
use minyi_catalog::{CatalogError, Responsibility, UnitKind};
use minyi_core::auth::Role;
use minyi_core::grpc::{Page, claims, invalid_argument, require_role};
use minyi_core::petition::{TicketStatus, Violations};
use minyi_core::pii::Keyring;
use minyi_core::store::{AuditPage, CatalogStore, TicketQuery};
use minyi_proto::arbitration::arbitration_service_server::ArbitrationService;
use minyi_proto::arbitration::*;
use minyi_proto::dispatch::DispatchTicket;
use tonic::{Request, Response, Status};

use crate::api::status;
use crate::engine::Engine;
use crate::machine::{Actor, Command};
use crate::view::ticket_view;

#[derive(Clone)]
pub struct ArbitrationApi {
    engine: Engine,
    keyring: Keyring,
    /// Where clarifications create new catalog versions and rulings become training examples.
    catalog: Option<Arc<dyn CatalogStore>>,
}

impl ArbitrationApi {
    pub fn new(engine: Engine, keyring: Keyring, catalog: Option<Arc<dyn CatalogStore>>) -> Self {
        Self {
            engine,
            keyring,
            catalog,
        }
    }

    fn actor(who: &minyi_core::auth::Claims) -> Actor {
        Actor {
            sub: who.sub.clone(),
            role: who.role,
            unit: who.unit.clone(),
        }
    }

    async fn clarify(
        &self,
        c: &minyi_proto::arbitration::Clarification,
        owner: &str,
        ruling_ref: &str,
        text: &str,
    ) -> Result<String, Status> {
        let bad = |field: &str, why: String| {
            let mut v = Violations::default();
            v.add(field, why);
            invalid_argument(&v)
        };
        if c.note.chars().count() > crate::machine::MAX_TEXT_CHARS {
            return Err(bad(
                "clarification.note",
                format!("longer than {} characters", crate::machine::MAX_TEXT_CHARS),
            ));
        }
        let item = c.item_code.trim();
        if self.engine.catalog.current().get(item).is_none() {
            return Err(bad(
                "clarification.item_code",
                format!("{item} is not in the active catalog"),
            ));
        }
        let change = match c.kind.as_str() {
            "note" => ClarificationChange::Note {
                item: item.to_owned(),
                note: c.note.trim().to_owned(),
            },
            "reassign" => {
                let street = self
                    .engine
                    .catalog
                    .current()
                    .units()
                    .get(owner)
                    .map(|u| u.kind)
                    == Some(UnitKind::Street);
                ClarificationChange::Reassign {
                    item: item.to_owned(),
                    responsibility: if street {
                        Responsibility::Territorial
                    } else {
                        Responsibility::functional(owner)
                    },
                    co_units: None,
                    note: c.note.trim().to_owned(),
                }
            }
            other => {
                return Err(bad(
                    "clarification.kind",
                    format!("`{other}`: use note or reassign"),
                ));
            }
        };
        let Some(store) = &self.catalog else {
            return Err(Status::failed_precondition(
                "this process has no catalog store to clarify",
            ));
        };
        let version = store
            .clarify(&Clarification {
                ruling: ruling_ref.to_owned(),
                change,
            })
            .await
            .map_err(|e| match e {
                CatalogError::Backend(_) | CatalogError::Io { .. } => {
                    Status::unavailable(format!("the catalog store failed: {e}"))
                }
                e => Status::failed_precondition(format!("the clarification is invalid: {e}")),
            })?;
        // In force here at once; other processes follow at their next poll.
        match store.load(&version).await {
            Ok(c) => self.engine.catalog.replace(c),
            Err(e) => tracing::warn!(%version, error = %e, "cannot load the clarified catalog yet"),
        }
        // The ruled ticket becomes a labelled example for the next training.
        crate::training::record(
            store.as_ref(),
            text,
            item,
            serde_json::json!({"source": "arbitration", "ruling": ruling_ref, "catalog_version": version}),
        )
        .await
        .map_err(|e| Status::internal(format!("recording the ruling: {e}")))?;
        Ok(version)
    }
}

#[tonic::async_trait]
impl ArbitrationService for ArbitrationApi {
    async fn list_pending(
        &self,
        request: Request<ListPendingRequest>,
    ) -> Result<Response<ListPendingResponse>, Status> {
        let who = claims(&request)?;
        require_role(
            &who,
            &[
                Role::Arbitrator,
                Role::Dispatcher,
                Role::Supervisor,
                Role::Admin,
            ],
            "read the arbitration queue",
        )?;
        let limit = match request.get_ref().page_size {
            0 => 100,
            n => (n as usize).min(500),
        };
        // The oldest first: the cases nearest their arbitration deadline.
        let tickets = self
            .engine
            .store
            .list_tickets(&TicketQuery {
                status: Some(TicketStatus::InArbitration),
                limit,
                oldest_first: true,
                ..TicketQuery::default()
            })
            .await?;
        let catalog = self.engine.catalog.current();
        let mut page = Page::new(limit);
        for t in &tickets {
            if !page.push(ticket_view(
                t,
                who.role,
                &self.keyring,
                &catalog,
                &AuditPage::default(),
            )) {
                break;
            }
        }
        Ok(Response::new(ListPendingResponse {
            tickets: page.entries,
        }))
    }

    async fn show(
        &self,
        request: Request<ShowRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        require_role(
            &who,
            &[
                Role::Arbitrator,
                Role::Dispatcher,
                Role::Supervisor,
                Role::Admin,
            ],
            "read arbitration cases",
        )?;
        let t = self
            .engine
            .store
            .get_ticket(request.get_ref().ticket.trim())
            .await?;
        let audit = AuditPage::newest(self.engine.store.as_ref(), t.id).await?;
        Ok(Response::new(ticket_view(
            &t,
            who.role,
            &self.keyring,
            &self.engine.catalog.current(),
            &audit,
        )))
    }

    async fn escalate(
        &self,
        request: Request<EscalateRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        let r = request.into_inner();
        let cmd = Command::Escalate { reason: r.reason };
        let t = self
            .engine
            .apply(
                r.ticket.trim(),
                &cmd,
                &Self::actor(&who),
                r.expected_version,
                None,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(ticket_view(
            &t,
            who.role,
            &self.keyring,
            &self.engine.catalog.current(),
            &AuditPage::default(),
        )))
    }

    async fn decide(
        &self,
        request: Request<DecideRequest>,
    ) -> Result<Response<DispatchTicket>, Status> {
        let who = claims(&request)?;
        require_role(
            &who,
            &[Role::Arbitrator, Role::Admin],
            "rule on hard tickets",
        )?;
        let r = request.into_inner();
        let t = self.engine.store.get_ticket(r.ticket.trim()).await?;
        if t.status != TicketStatus::InArbitration {
            return Err(Status::failed_precondition(format!(
                "ticket is {}: only a ticket in arbitration can be ruled on",
                crate::machine::state_name(&t)
            )));
        }
        let owner = r.owner_unit.trim().to_owned();
        let mut cmd = Command::Arbitrate {
            owner_unit: owner.clone(),
            co_units: r.co_units,
            ruling: r.ruling,
            catalog_version: String::new(),
        };
        // The ruling is checked whole before its clarification changes the catalog: a ruling
        // refused afterwards would leave a new catalog version and a training example behind.
        self.engine
            .check(&t, &cmd, &Self::actor(&who))
            .await
            .map_err(status)?;
        if let Some(c) = r.clarification.as_ref().filter(|c| !c.kind.is_empty()) {
            let version = self
                .clarify(c, &owner, &format!("KC-{}", t.tracking_number), &t.text)
                .await?;
            if let Command::Arbitrate {
                catalog_version, ..
            } = &mut cmd
            {
                *catalog_version = version;
            }
        }
        let t = self
            .engine
            .apply(
                &t.id.to_string(),
                &cmd,
                &Self::actor(&who),
                r.expected_version,
                None,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(ticket_view(
            &t,
            who.role,
            &self.keyring,
            &self.engine.catalog.current(),
            &AuditPage::default(),
        )))
    }
}
