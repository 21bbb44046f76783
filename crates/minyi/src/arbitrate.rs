//! `minyi arbitrate`: the arbitrators' command (快裁) — the queue of hard tickets, one case
//! with its history, and the ruling.

use anyhow::Context;
use minyi_core::event::from_timestamp;
use minyi_proto::arbitration::arbitration_service_client::ArbitrationServiceClient;
use minyi_proto::arbitration::{Clarification, DecideRequest, ListPendingRequest, ShowRequest};
use minyi_proto::dispatch::DispatchTicket;
use tonic::metadata::MetadataValue;

use crate::client::{Connection, explain};

#[derive(Debug, clap::Subcommand)]
pub enum ArbitrateCommand {
    /// The arbitration queue, oldest first.
    List,
    /// One case: why it is hard, the candidates, its full history.
    Show { ticket: String },
    /// Rule: the owner handles it under 先办后议 (it cannot return it).
    Decide {
        ticket: String,
        /// The owning unit (e.g. DEP-ZJ).
        #[arg(long)]
        owner: String,
        /// Co-handling units.
        #[arg(long = "co")]
        co_units: Vec<String>,
        /// The ruling text.
        #[arg(long)]
        ruling: String,
        /// Clarify this catalog item (creates a new catalog version).
        #[arg(long)]
        clarify_item: Option<String>,
        /// `note` (the item gets the ruling as a note) or `reassign` (the item's owner
        /// becomes --owner).
        #[arg(long, default_value = "note", value_parser = ["note", "reassign"])]
        clarify: String,
        /// The clarification's wording (defaults to the ruling).
        #[arg(long)]
        note: Option<String>,
    },
}

fn when(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(from_timestamp)
        .map(|t| {
            t.with_timezone(&minyi_core::clock::shanghai())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

fn case_json(t: &DispatchTicket) -> serde_json::Value {
    let a = t.arbitration.clone().unwrap_or_default();
    serde_json::json!({
        "ticket_id": t.ticket_id,
        "tracking_number": t.tracking_number,
        "title": t.title,
        "text": t.text,
        "reason": a.reason,
        "candidates": a.candidates,
        "escalated_at": when(&a.escalated_at),
        "due": when(&a.due),
        "ruling": a.ruling,
        "owner": t.lead_unit,
        "catalog_version": a.catalog_version,
        "returns": t.returns.iter().map(|r| serde_json::json!({
            "unit": r.unit, "reason": r.reason, "rule": r.catalog_rule, "at": when(&r.at),
        })).collect::<Vec<_>>(),
        "audit": t.audit.iter().map(|e| serde_json::json!({
            "at": when(&e.at), "actor": e.actor, "role": e.role, "unit": e.unit,
            "action": e.action, "from": e.from_state, "to": e.to_state, "reason": e.reason,
            "allowed": e.allowed,
        })).collect::<Vec<_>>(),
        "audit_total": t.audit_total,
    })
}

fn case_text(t: &DispatchTicket) -> String {
    let a = t.arbitration.clone().unwrap_or_default();
    let mut out = format!(
        "{}  {}\n  why hard:    {}\n  candidates:  {}\n  escalated:   {}   ruling due: {}\n",
        t.tracking_number,
        t.title,
        a.reason,
        a.candidates.join(", "),
        when(&a.escalated_at),
        when(&a.due),
    );
    out.push_str(&format!("  text:        {}\n", t.text));
    for r in &t.returns {
        out.push_str(&format!(
            "  returned by {} at {}: {} (rule {})\n",
            r.unit,
            when(&r.at),
            r.reason,
            r.catalog_rule
        ));
    }
    if !a.ruling.is_empty() {
        out.push_str(&format!(
            "  ruling:      {} → {} (catalog {})\n",
            a.ruling,
            t.lead_unit,
            if a.catalog_version.is_empty() {
                "unchanged"
            } else {
                &a.catalog_version
            }
        ));
    }
    if !t.audit.is_empty() {
        if t.audit_total > t.audit.len() as u64 {
            out.push_str(&format!(
                "  history (the last {} of {} lines; `minyi dispatch audit {}` prints them all):\n",
                t.audit.len(),
                t.audit_total,
                t.tracking_number
            ));
        } else {
            out.push_str("  history:\n");
        }
        for e in &t.audit {
            out.push_str(&format!(
                "    {}  {:<10} {:<18} {} → {}  {}{}\n",
                when(&e.at),
                e.role,
                e.action,
                e.from_state,
                e.to_state,
                e.reason,
                if e.allowed { "" } else { "  [refused]" }
            ));
        }
    }
    out
}

/// Runs one arbitration command; returns what to print.
pub async fn run(conn: &Connection, command: ArbitrateCommand) -> anyhow::Result<String> {
    let token: MetadataValue<_> = format!("Bearer {}", conn.token_for("arbitrator")?)
        .parse()
        .context("the token is not valid header text")?;
    let channel = conn.channel().await?;
    let mut client =
        ArbitrationServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", token.clone());
            Ok(req)
        });
    let fail = |s: tonic::Status| anyhow::anyhow!(explain(&s));
    match command {
        ArbitrateCommand::List => {
            let r = client
                .list_pending(ListPendingRequest::default())
                .await
                .map_err(fail)?
                .into_inner();
            if conn.json {
                return Ok(serde_json::to_string_pretty(
                    &r.tickets.iter().map(case_json).collect::<Vec<_>>(),
                )?);
            }
            if r.tickets.is_empty() {
                return Ok("the arbitration queue is empty".into());
            }
            let mut out = format!(
                "{:<20} {:<16} {:<16} {:<28} {}\n",
                "TICKET", "ESCALATED", "DUE", "WHY", "CANDIDATES"
            );
            for t in &r.tickets {
                let a = t.arbitration.clone().unwrap_or_default();
                out.push_str(&format!(
                    "{:<20} {:<16} {:<16} {:<28} {}\n",
                    t.tracking_number,
                    when(&a.escalated_at),
                    when(&a.due),
                    a.reason.chars().take(26).collect::<String>(),
                    a.candidates.join(",")
                ));
            }
            Ok(out.trim_end().to_owned())
        }
        ArbitrateCommand::Show { ticket } => {
            let t = client
                .show(ShowRequest { ticket })
                .await
                .map_err(fail)?
                .into_inner();
            Ok(if conn.json {
                serde_json::to_string_pretty(&case_json(&t))?
            } else {
                case_text(&t).trim_end().to_owned()
            })
        }
        ArbitrateCommand::Decide {
            ticket,
            owner,
            co_units,
            ruling,
            clarify_item,
            clarify,
            note,
        } => {
            let clarification = clarify_item.map(|item_code| Clarification {
                kind: clarify,
                item_code,
                note: note.unwrap_or_else(|| ruling.clone()),
            });
            let t = client
                .decide(DecideRequest {
                    ticket,
                    owner_unit: owner,
                    co_units,
                    ruling,
                    clarification,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            Ok(if conn.json {
                serde_json::to_string_pretty(&case_json(&t))?
            } else {
                let a = t.arbitration.clone().unwrap_or_default();
                format!(
                    "{} ruled: {} leads (先办后议){}",
                    t.tracking_number,
                    if t.lead_unit_name.is_empty() {
                        &t.lead_unit
                    } else {
                        &t.lead_unit_name
                    },
                    if a.catalog_version.is_empty() {
                        String::new()
                    } else {
                        format!("; catalog clarified as {}", a.catalog_version)
                    }
                )
            })
        }
    }
}
