//! `minyi dispatch`: the dispatchers' command (派单) — the queue of tickets waiting for a
//! person with the classifier's suggestions, sending a ticket to a unit, extension requests,
//! callbacks (回访) and archiving.

use chrono::Utc;
use minyi_dispatch::machine::{CAUSES, RATINGS};
use minyi_proto::dispatch::{
    ArchiveRequest, DecideExtensionRequest, DispatchRequest, GetTicketRequest, ListQueueRequest,
    RecordCallbackRequest,
};
use serde_json::json;

use crate::client::Connection;
use crate::handler::{
    Client, Out, audit, beijing, first_tickets, one_line, pad, state_name, ticket_human,
    ticket_json, title_of, truncate, unit_label,
};

#[derive(Debug, clap::Subcommand)]
pub enum DispatchCommand {
    /// Tickets waiting for a dispatcher (unsure classification, returns), with the
    /// classifier's suggestions and each unit's open tickets.
    Queue {
        /// At most this many tickets.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Everything about one ticket: routing, suggestions, returns, the newest audit lines.
    Show { ticket: String },
    /// A ticket's whole audit trail, oldest first (one JSON document per line with --json).
    Audit { ticket: String },
    /// 派单: send a ticket to a unit, or to the best suggestion whose unit has not returned it.
    Send {
        ticket: String,
        /// The lead unit (e.g. ST-GM or DEP-ZJ).
        #[arg(long, required_unless_present = "next", conflicts_with = "next")]
        unit: Option<String>,
        /// Co-handling units (repeatable, or comma-separated).
        #[arg(long = "co", value_delimiter = ',')]
        co_units: Vec<String>,
        /// Take the best suggestion whose unit has not returned the ticket.
        #[arg(long)]
        next: bool,
        /// Reclassify to this catalog item (recorded as a training example).
        #[arg(long)]
        item: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// 延期: approve or refuse a unit's pending extension request.
    Extension {
        ticket: String,
        #[arg(long, required_unless_present = "refuse", conflicts_with = "refuse")]
        approve: bool,
        #[arg(long)]
        refuse: bool,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// 回访: the citizen's rating of a completed ticket; dissatisfied for a cause on the
    /// unit's side reopens it for redo.
    Callback {
        ticket: String,
        #[arg(long, value_parser = RATINGS)]
        rating: String,
        /// Whose side a dissatisfied rating is on.
        #[arg(long, value_parser = CAUSES)]
        cause: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// 归档: archive a completed or called-back ticket.
    Archive { ticket: String },
}

/// The flag of a request field the server names in a refusal (`lead_unit` is `--unit`).
fn flag_of(field: &str) -> String {
    let (name, index) = field
        .split_once('[')
        .map_or((field, ""), |(n, _)| (n, field));
    match name {
        "lead_unit" => "--unit".into(),
        "co_units" => format!("--co ({index})"),
        "use_next_suggestion" => "--next".into(),
        "item_code" => "--item".into(),
        "rating" | "cause" | "note" => format!("--{name}"),
        _ => field.to_owned(),
    }
}

/// One plain sentence for a gRPC error, worded as for handlers; invalid fields named by
/// their flags.
fn explain(status: &tonic::Status, endpoint: &str) -> String {
    match status.code() {
        tonic::Code::InvalidArgument => crate::client::explain_fields(status, flag_of),
        // The handlers' wording names their token's variable.
        tonic::Code::Unauthenticated => crate::client::explain(status),
        _ => crate::handler::explain(status, endpoint),
    }
}

/// Runs one dispatcher command, printing as it goes.
pub async fn run(conn: &Connection, command: DispatchCommand) -> anyhow::Result<()> {
    crate::handler::reader_gone_is_fine(execute(conn, command).await)
}

async fn execute(conn: &Connection, command: DispatchCommand) -> anyhow::Result<()> {
    let token = conn.token_for("dispatcher")?;
    let mut client = crate::handler::client(conn.channel().await?, &token)?;
    let out = Out::new(conn.json);
    let endpoint = conn.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!(explain(&s, &endpoint));
    let (t, msg) = match command {
        DispatchCommand::Queue { limit } => {
            return queue(&client, &out, limit, &endpoint).await;
        }
        DispatchCommand::Show { ticket } => {
            let t = client
                .get_ticket(GetTicketRequest { ticket })
                .await
                .map_err(fail)?
                .into_inner();
            out.line(&if out.json {
                ticket_json(&t).to_string()
            } else {
                ticket_human(&t, &out, Utc::now())
            })?;
            return Ok(());
        }
        DispatchCommand::Audit { ticket } => {
            return audit(&mut client, &out, ticket, |s| explain(s, &endpoint)).await;
        }
        DispatchCommand::Send {
            ticket,
            unit,
            co_units,
            next,
            item,
            note,
        } => {
            let t = client
                .dispatch(DispatchRequest {
                    ticket,
                    lead_unit: unit.unwrap_or_default(),
                    co_units,
                    use_next_suggestion: next,
                    item_code: item.unwrap_or_default(),
                    note,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let item = t
                .routing
                .as_ref()
                .map(|r| format!(" as {} {}", r.item_code, r.item_name))
                .unwrap_or_default();
            let msg = format!(
                "{} sent to {}{item}",
                t.tracking_number,
                unit_label(&t.lead_unit, &t.lead_unit_name)
            );
            (t, msg)
        }
        DispatchCommand::Extension {
            ticket,
            approve,
            refuse: _,
            note,
        } => {
            let t = client
                .decide_extension(DecideExtensionRequest {
                    ticket,
                    approve,
                    note,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = if approve {
                format!(
                    "{}: extension approved; complete by {}",
                    t.tracking_number,
                    beijing(t.complete_by.as_ref())
                )
            } else {
                format!("{}: extension refused", t.tracking_number)
            };
            (t, msg)
        }
        DispatchCommand::Callback {
            ticket,
            rating,
            cause,
            note,
        } => {
            let t = client
                .record_callback(RecordCallbackRequest {
                    ticket,
                    rating,
                    cause: cause.unwrap_or_default(),
                    note,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = if t.state == minyi_proto::dispatch::DispatchState::Accepted as i32 {
                format!(
                    "{}: reopened for {} to redo; complete by {}",
                    t.tracking_number,
                    unit_label(&t.lead_unit, &t.lead_unit_name),
                    beijing(t.complete_by.as_ref())
                )
            } else {
                format!("{}: callback recorded", t.tracking_number)
            };
            (t, msg)
        }
        DispatchCommand::Archive { ticket } => {
            let t = client
                .archive(ArchiveRequest {
                    ticket,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!("{} archived", t.tracking_number);
            (t, msg)
        }
    };
    out.line(&if out.json {
        ticket_json(&t).to_string()
    } else {
        msg
    })?;
    Ok(())
}

/// The queue, oldest first, with each ticket's best suggestions and the units' loads.
async fn queue(client: &Client, out: &Out, limit: u32, endpoint: &str) -> anyhow::Result<()> {
    // Every page carries the loads of all units.
    let load = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let (tickets, more) = first_tickets(limit, |page_size, page_token| {
        let mut client = client.clone();
        let load = &load;
        async move {
            let r = client
                .list_queue(ListQueueRequest {
                    page_size,
                    page_token,
                })
                .await
                .map_err(|s| anyhow::anyhow!(explain(&s, endpoint)))?
                .into_inner();
            load.borrow_mut().extend(r.unit_load);
            Ok((r.tickets, r.next_page_token))
        }
    })
    .await?;
    let load = load.into_inner();
    if out.json {
        out.line(
            &json!({
                "tickets": tickets.iter().map(ticket_json).collect::<Vec<_>>(),
                "unit_load": load,
                "more": more,
            })
            .to_string(),
        )?;
        return Ok(());
    }
    if tickets.is_empty() {
        out.line("no ticket is waiting for a dispatcher")?;
        return Ok(());
    }
    let mut s = format!(
        "{:<20} {:<9} {:<24} {:<30} {}\n",
        "TRACKING", "STATE", "TITLE", "WHY", "SUGGESTIONS"
    );
    for t in &tickets {
        let routing = t.routing.clone().unwrap_or_default();
        let why = match t.returns.last() {
            Some(r) if state_name(t.state) == "returned" => format!("returned by {}", r.unit),
            _ => routing.reason.clone(),
        };
        let suggestions = routing
            .suggestions
            .iter()
            .take(3)
            .map(|g| {
                let unit = if g.unit.is_empty() { "?" } else { &g.unit };
                format!("{}→{unit} {:.2}", g.item_code, g.confidence)
            })
            .collect::<Vec<_>>()
            .join("  ");
        s.push_str(&format!(
            "{:<20} {:<9} {} {} {suggestions}\n",
            t.tracking_number,
            match state_name(t.state) {
                "unspecified" => "waiting",
                other => other,
            },
            pad(&truncate(&title_of(t), 22), 24),
            pad(&truncate(&one_line(&why), 28), 30),
        ));
    }
    let busiest: Vec<String> = {
        let mut units: Vec<_> = load.iter().collect();
        units.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        units
            .iter()
            .take(8)
            .map(|(u, n)| format!("{u} {n}"))
            .collect()
    };
    if s.contains("→? ") {
        s.push_str("→? : a territorial (属地) item whose street is not known: name the unit\n");
    }
    if !busiest.is_empty() {
        s.push_str(&format!("open tickets per unit: {}\n", busiest.join(", ")));
    }
    s.push_str(&format!(
        "{} ticket(s){}; `minyi dispatch show TICKET` for one, `minyi dispatch send TICKET --unit U` or `--next` to send it",
        tickets.len(),
        if more { ", more waiting (--limit)" } else { "" }
    ));
    out.line(&s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::flag_of;

    #[test]
    fn refused_fields_are_named_by_their_flags() {
        assert_eq!(flag_of("lead_unit"), "--unit");
        assert_eq!(flag_of("co_units[1]"), "--co (co_units[1])");
        assert_eq!(flag_of("use_next_suggestion"), "--next");
        assert_eq!(flag_of("item_code"), "--item");
        assert_eq!(flag_of("note"), "--note");
        assert_eq!(flag_of("ticket"), "ticket");
    }
}
