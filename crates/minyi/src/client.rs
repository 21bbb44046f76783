//! `minyi petition submit|show|list|follow-up`: the agent commands over gRPC.

use std::path::PathBuf;

use anyhow::Context;
use minyi_proto::common::{Caller, GeoPoint, Location, Routing};
use minyi_proto::intake::intake_service_client::IntakeServiceClient;
use minyi_proto::intake::{
    AddFollowUpRequest, GetTicketRequest, ListTicketsRequest, SubmitPetitionRequest, Ticket,
};
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel as GrpcChannel;
use tonic_types::StatusExt;

use crate::app::{CREDENTIALS_FILE, DevCredentials};
use crate::tls::ClientTls;

/// How to reach the cluster, shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// gRPC endpoint: `http://` in plaintext, `https://` over TLS.
    #[arg(
        long,
        env = "MINYI_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub endpoint: String,
    /// Bearer token; defaults to the agent token `minyi dev` wrote to data/dev/credentials.json.
    #[arg(long, env = "MINYI_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Where `minyi dev` keeps its data (for the development token).
    #[arg(long, default_value = "data/dev", global = true)]
    pub data_dir: PathBuf,
    /// PEM CA bundle that signed the cluster's certificate, for an `https://` endpoint
    /// [default: the system's trusted CAs].
    #[arg(long, env = "MINYI_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a cluster that requires mutual TLS (with --client-key).
    #[arg(long, env = "MINYI_CLIENT_CERT", global = true)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "MINYI_CLIENT_KEY", global = true)]
    pub client_key: Option<PathBuf>,
    /// Print JSON instead of a human-readable summary.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Connection {
    pub fn token_for(&self, role: &str) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let path = self.data_dir.join(CREDENTIALS_FILE);
        let creds: DevCredentials = serde_json::from_slice(&std::fs::read(&path).with_context(
            || {
                format!(
                    "no --token given and no development credentials at {} (is `make run` running?)",
                    path.display()
                )
            },
        )?)?;
        creds
            .tokens
            .get(role)
            .cloned()
            .with_context(|| format!("no {role} token in {}", path.display()))
    }

    pub fn tls(&self) -> ClientTls {
        ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
        }
    }

    /// A channel to `--endpoint` (or another endpoint of the same cluster), with the TLS
    /// settings of this connection.
    pub async fn channel_to(&self, endpoint: &str) -> anyhow::Result<GrpcChannel> {
        crate::tls::connect(endpoint, &self.tls()).await
    }

    pub async fn channel(&self) -> anyhow::Result<GrpcChannel> {
        self.channel_to(&self.endpoint).await
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum PetitionCommand {
    /// Record a petition; prints its tracking number.
    Submit(Box<SubmitArgs>),
    /// Show one ticket by id or tracking number.
    Show { id: String },
    /// List tickets, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
        /// received, needs_dispatcher, dispatched, accepted, completed, archived, linked_duplicate
        #[arg(long)]
        status: Option<String>,
    },
    /// Add follow-up information from the citizen to an open ticket.
    FollowUp {
        id: String,
        #[arg(long)]
        text: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// What the citizen says.
    #[arg(long)]
    pub text: String,
    #[arg(long, default_value = "")]
    pub title: String,
    /// hotline, app, web, wechat, letter, walk_in, open311
    #[arg(long, default_value = "hotline")]
    pub channel: String,
    #[arg(long, default_value = "")]
    pub name: String,
    #[arg(long, default_value = "")]
    pub phone: String,
    #[arg(long, default_value = "")]
    pub id_number: String,
    #[arg(long)]
    pub anonymous: bool,
    #[arg(long, default_value = "")]
    pub address: String,
    #[arg(long, requires = "lon")]
    pub lat: Option<f64>,
    #[arg(long, requires = "lat")]
    pub lon: Option<f64>,
    /// Retrying with the same key never creates a second ticket.
    #[arg(long, default_value = "")]
    pub idempotency_key: String,
    #[arg(long = "attachment")]
    pub attachments: Vec<String>,
}

/// Turns a gRPC error into a message for a person: every bad field on its own line.
pub fn explain(status: &tonic::Status) -> String {
    explain_fields(status, str::to_owned)
}

/// [`explain`], naming each invalid field by `name(field)` (a command line's flag).
pub fn explain_fields(status: &tonic::Status, name: impl Fn(&str) -> String) -> String {
    let mut msg = match status.code() {
        tonic::Code::Unauthenticated => format!("not signed in: {}", status.message()),
        tonic::Code::PermissionDenied => format!("not allowed: {}", status.message()),
        tonic::Code::NotFound => status.message().to_owned(),
        tonic::Code::Unavailable => format!("Minyi is unavailable: {}", status.message()),
        tonic::Code::InvalidArgument => "the request has invalid fields:".to_owned(),
        _ => status.message().to_owned(),
    };
    if status.code() == tonic::Code::InvalidArgument {
        match status.get_details_bad_request() {
            Some(br) => {
                for v in br.field_violations {
                    msg.push_str(&format!("\n  {}: {}", name(&v.field), v.description));
                }
            }
            None => msg.push_str(&format!(" {}", status.message())),
        }
    }
    msg
}

fn ticket_json(t: &Ticket) -> serde_json::Value {
    let caller = t.caller.clone().unwrap_or_default();
    let loc = t.location.clone().unwrap_or_default();
    json!({
        "id": t.id,
        "tracking_number": t.tracking_number,
        "status": minyi_core::petition::TicketStatus::from_proto(t.status).map(|s| s.as_str()),
        "channel": minyi_core::petition::Channel::from_proto(t.channel).map(|c| c.as_str()),
        "title": t.title,
        "text": t.text,
        "caller": {
            "anonymous": caller.anonymous,
            "name": caller.name,
            "phone": caller.phone,
            "id_number": caller.id_number,
        },
        "address": loc.address,
        "point": loc.point.map(|p| json!({"latitude": p.latitude, "longitude": p.longitude})),
        "received_at": t.received_at.as_ref().and_then(minyi_core::event::from_timestamp),
        "attachment_urls": t.attachment_urls,
        "follow_ups": t.follow_ups.iter().map(|f| json!({
            "text": f.text, "author": f.author,
            "at": f.at.as_ref().and_then(minyi_core::event::from_timestamp),
        })).collect::<Vec<_>>(),
        "routing": t.routing.as_ref().map(crate::handler::routing_json),
    })
}

/// The routing as the agent reads it out: where the petition went, or that a dispatcher is
/// deciding (with the best suggestions).
fn routing_human(r: &Routing) -> String {
    use std::fmt::Write;
    // " (text)", or nothing for an empty text.
    let aside = |text: &str| {
        if text.is_empty() {
            String::new()
        } else {
            format!(" ({text})")
        }
    };
    let mut s = String::new();
    if !r.duplicate_of.is_empty() {
        let _ = writeln!(s, "  routing: duplicate of open ticket {}", r.duplicate_of);
        return s;
    }
    if r.decision == "auto" {
        let with = if r.co_units.is_empty() {
            String::new()
        } else {
            format!(" with {}", r.co_units.join(", "))
        };
        let _ = writeln!(
            s,
            "  routing: {} {} → {}{with} (automatic, confidence {:.2})",
            r.item_code, r.item_name, r.lead_unit, r.confidence
        );
        if r.complete_days > 0 {
            let _ = writeln!(
                s,
                "  limits:  accept {} h, respond {} h, complete {} working days{}",
                r.accept_hours,
                r.respond_hours,
                r.complete_days,
                aside(&r.grade)
            );
        }
    } else {
        let _ = writeln!(s, "  routing: left to a dispatcher{}", aside(&r.reason));
        for (i, g) in r.suggestions.iter().take(3).enumerate() {
            let _ = writeln!(
                s,
                "    {}. {} {} → {} ({:.2})",
                i + 1,
                g.item_code,
                g.item_name,
                g.unit,
                g.confidence
            );
        }
    }
    let place: Vec<&str> = [r.street.as_str(), r.community.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if !place.is_empty() {
        let _ = writeln!(s, "  place:   {}", place.join(" / "));
    }
    s
}

fn ticket_human(t: &Ticket) -> String {
    let j = ticket_json(t);
    let mut s = format!(
        "{}  [{}]  {}\n",
        t.tracking_number,
        j["status"].as_str().unwrap_or("?"),
        j["received_at"].as_str().unwrap_or("")
    );
    if !t.title.is_empty() {
        s.push_str(&format!("  title:   {}\n", t.title));
    }
    s.push_str(&format!("  text:    {}\n", t.text));
    let c = t.caller.clone().unwrap_or_default();
    if c.anonymous {
        s.push_str("  caller:  (anonymous)\n");
    } else {
        s.push_str(&format!(
            "  caller:  {} {} {}\n",
            c.name, c.phone, c.id_number
        ));
    }
    if let Some(l) = &t.location
        && !l.address.is_empty()
    {
        s.push_str(&format!("  address: {}\n", l.address));
    }
    for f in &t.follow_ups {
        s.push_str(&format!("  follow-up ({}): {}\n", f.author, f.text));
    }
    if let Some(r) = &t.routing {
        s.push_str(&routing_human(r));
    }
    s.push_str(&format!("  id:      {}", t.id));
    s
}

pub async fn run(conn: &Connection, cmd: PetitionCommand) -> anyhow::Result<String> {
    let token: MetadataValue<_> = format!("Bearer {}", conn.token_for("agent")?)
        .parse()
        .context("the token is not valid header text")?;
    let channel = conn.channel().await?;
    let mut client =
        IntakeServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", token.clone());
            Ok(req)
        });
    let result = match cmd {
        PetitionCommand::Submit(a) => {
            let a = *a;
            let channel = minyi_core::petition::Channel::parse(&a.channel)
                .map(|c| c.to_proto())
                .unwrap_or(-1);
            let req = SubmitPetitionRequest {
                channel,
                text: a.text,
                title: a.title,
                caller: Some(Caller {
                    anonymous: a.anonymous,
                    name: a.name,
                    phone: a.phone,
                    id_number: a.id_number,
                }),
                location: Some(Location {
                    address: a.address,
                    point: a.lat.zip(a.lon).map(|(latitude, longitude)| GeoPoint {
                        latitude,
                        longitude,
                    }),
                }),
                event_time: None,
                attachment_urls: a.attachments,
                idempotency_key: a.idempotency_key,
            };
            client.submit_petition(req).await.map(|r| {
                let r = r.into_inner();
                let t = r.ticket.unwrap_or_default();
                if conn.json {
                    json!({"created": r.created, "ticket": ticket_json(&t)}).to_string()
                } else if r.created {
                    format!("recorded {} (id {})", t.tracking_number, t.id)
                } else {
                    format!(
                        "already recorded under this idempotency key: {} (id {})",
                        t.tracking_number, t.id
                    )
                }
            })
        }
        PetitionCommand::Show { id } => client.get_ticket(GetTicketRequest { id }).await.map(|r| {
            let t = r.into_inner();
            if conn.json {
                ticket_json(&t).to_string()
            } else {
                ticket_human(&t)
            }
        }),
        PetitionCommand::List {
            page_size,
            page_token,
            status,
        } => {
            let status = match status {
                Some(s) => minyi_core::petition::TicketStatus::parse(&s)
                    .map(|s| s.to_proto())
                    .with_context(|| format!("unknown --status {s}"))?,
                None => 0,
            };
            client
                .list_tickets(ListTicketsRequest {
                    page_size,
                    page_token,
                    status,
                    ..ListTicketsRequest::default()
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    if conn.json {
                        json!({
                            "tickets": r.tickets.iter().map(ticket_json).collect::<Vec<_>>(),
                            "next_page_token": r.next_page_token,
                        })
                        .to_string()
                    } else {
                        let mut s = format!(
                            "{:<20} {:<17} {:<8} TEXT\n",
                            "TRACKING", "STATUS", "CHANNEL"
                        );
                        for t in &r.tickets {
                            let j = ticket_json(t);
                            let text: String = t.text.chars().take(40).collect();
                            s.push_str(&format!(
                                "{:<20} {:<17} {:<8} {}\n",
                                t.tracking_number,
                                j["status"].as_str().unwrap_or("?"),
                                j["channel"].as_str().unwrap_or("?"),
                                text.replace('\n', " ")
                            ));
                        }
                        if !r.next_page_token.is_empty() {
                            s.push_str(&format!("more: --page-token {}", r.next_page_token));
                        }
                        s.trim_end().to_owned()
                    }
                })
        }
        PetitionCommand::FollowUp { id, text } => client
            .add_follow_up(AddFollowUpRequest { id, text })
            .await
            .map(|r| {
                let t = r.into_inner();
                if conn.json {
                    ticket_json(&t).to_string()
                } else {
                    format!("follow-up added to {}", t.tracking_number)
                }
            }),
    };
    result.map_err(|s| anyhow::anyhow!(explain(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minyi_proto::common::Suggestion;

    #[test]
    fn show_tells_where_the_petition_went() {
        let mut t = Ticket {
            id: "x".into(),
            tracking_number: "MY-1".into(),
            text: "路灯坏了".into(),
            ..Ticket::default()
        };
        assert!(!ticket_human(&t).contains("routing"));
        assert!(ticket_json(&t)["routing"].is_null());

        t.routing = Some(Routing {
            decision: "auto".into(),
            item_code: "CG-01-001".into(),
            item_name: "路灯维修".into(),
            lead_unit: "DEP-CG".into(),
            co_units: vec!["ST-GM".into()],
            confidence: 0.991,
            accept_hours: 2,
            respond_hours: 24,
            complete_days: 5,
            grade: "normal".into(),
            street: "ST-GM".into(),
            ..Routing::default()
        });
        let h = ticket_human(&t);
        assert!(
            h.contains(
                "routing: CG-01-001 路灯维修 → DEP-CG with ST-GM (automatic, confidence 0.99)"
            ),
            "{h}"
        );
        assert!(h.contains("complete 5 working days (normal)"), "{h}");
        assert!(h.contains("place:   ST-GM"), "{h}");
        assert_eq!(ticket_json(&t)["routing"]["lead_unit"], "DEP-CG");

        t.routing = Some(Routing {
            decision: "needs_dispatcher".into(),
            reason: "low confidence".into(),
            suggestions: vec![Suggestion {
                item_code: "A".into(),
                item_name: "甲".into(),
                unit: "U1".into(),
                confidence: 0.4,
                ..Suggestion::default()
            }],
            ..Routing::default()
        });
        let h = ticket_human(&t);
        assert!(h.contains("left to a dispatcher (low confidence)"), "{h}");
        assert!(h.contains("1. A 甲 → U1 (0.40)"), "{h}");
        assert_eq!(ticket_json(&t)["routing"]["suggestions"][0]["unit"], "U1");

        t.routing = Some(Routing {
            duplicate_of: "y".into(),
            ..Routing::default()
        });
        assert!(ticket_human(&t).contains("duplicate of open ticket y"));
    }
}
