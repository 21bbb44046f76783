//! `minyi-handler`: the dispatch client of street-office and department handlers — the
//! unit's inbox, a live feed of new work, and the actions on a ticket (签收 accept, 退回
//! return, 延期 extend, 补充材料 pause/resume, 吹哨 whistle, 协办 co-handle, progress notes, 办结
//! complete).
//!
//! Credentials come from flags, then `MINYI_HANDLER_*` variables, then a TOML file
//! (`endpoint`, `token`, and for `https://` endpoints `ca_file`, `client_cert`, `client_key`). Output is a table or a sentence for people, one JSON document per
//! line with `--json`. Every gRPC error becomes one plain sentence; nothing panics.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use figment::Figment;
use figment::providers::{Format, Toml};
use minyi_core::event::from_timestamp;
use minyi_core::store::DispatchState as State;
use minyi_proto::common::Routing;
use minyi_proto::dispatch::dispatch_service_client::DispatchServiceClient;
use minyi_proto::dispatch::{
    AcceptRequest, AddCoHandlersRequest, AddProgressRequest, AuditEntry, CompleteRequest,
    DispatchState, DispatchTicket, GetTicketRequest, InboxEntry, ListAuditRequest,
    ListInboxRequest, PauseForCitizenRequest, RequestExtensionRequest, ResumeRequest,
    ReturnRequest, WatchInboxRequest, WhistleRequest,
};
use prost_types::Timestamp;
use serde_json::{Value, json};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::tls::ClientTls;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// The largest page the server hands out; longer `--limit`s read several pages.
const MAX_PAGE: u32 = 500;

#[derive(Debug, clap::Parser)]
#[command(
    name = "minyi-handler",
    version,
    about = "Minyi for handlers: your unit's inbox and what you do with its tickets",
    after_help = "Credentials: --token / MINYI_HANDLER_TOKEN / `token` in the config file, in that order \
                  (likewise for the endpoint).\nTICKET is a ticket id or a tracking number (MY-20261126-000012)."
)]
pub struct Cli {
    #[command(flatten)]
    pub credentials: Credentials,
    #[command(subcommand)]
    pub command: HandlerCommand,
}

/// Where the dispatch service is and who is asking. Flags beat environment beat file.
#[derive(Debug, Clone, clap::Args)]
pub struct Credentials {
    /// gRPC endpoint of the dispatch service, `https://` for TLS [default: http://127.0.0.1:50051].
    #[arg(long, env = "MINYI_HANDLER_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// PEM CA bundle that signed the server's certificate, for an `https://` endpoint
    /// [default: the system's trusted CAs].
    #[arg(long, env = "MINYI_HANDLER_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS (with --client-key).
    #[arg(long, env = "MINYI_HANDLER_CLIENT_CERT", global = true)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "MINYI_HANDLER_CLIENT_KEY", global = true)]
    pub client_key: Option<PathBuf>,
    /// Handler bearer token (names your unit).
    #[arg(
        long,
        env = "MINYI_HANDLER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// TOML file with `endpoint` and `token` (and `ca_file`, `client_cert`, `client_key`)
    /// [default: ~/.config/minyi/handler.toml, if it exists].
    #[arg(long, env = "MINYI_HANDLER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON (one document per line) instead of tables and sentences.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum HandlerCommand {
    /// Tickets your unit leads or co-handles, newest first.
    Inbox {
        /// Only tickets in this state (repeatable).
        #[arg(long = "state", value_enum)]
        states: Vec<StateFilter>,
        /// At most this many tickets.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// New work for your unit as it arrives, until Ctrl-C; reconnects when the stream breaks.
    Watch {
        /// Start after this cursor: 0 = from the beginning, -1 = where your last stream stopped.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        from: i64,
    },
    /// Everything about one ticket, with the newest lines of its audit trail.
    Show { ticket: String },
    /// A ticket's whole audit trail, oldest first (one JSON document per line with --json).
    Audit { ticket: String },
    /// 签收: accept a ticket your unit leads, or report in as co-handler / summoned unit.
    Accept { ticket: String },
    /// 退回: return a ticket that is not your unit's, before the acceptance limit.
    Return {
        ticket: String,
        /// Why the ticket is not your unit's.
        #[arg(long)]
        reason: String,
        /// The catalog item code the return relies on.
        #[arg(long)]
        rule: String,
    },
    /// 延期: ask a dispatcher for more working days before the deadline.
    Extend {
        ticket: String,
        /// Working days to add.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        #[arg(long)]
        reason: String,
    },
    /// 吹哨: summon departments to a ticket your street office leads.
    Whistle {
        ticket: String,
        /// Unit code to summon (repeatable, or comma-separated).
        #[arg(long = "unit", required = true, value_delimiter = ',')]
        units: Vec<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// 协办: add co-handling units to a ticket your unit leads.
    Cohandle {
        ticket: String,
        /// Unit code (repeatable, or comma-separated).
        #[arg(long = "unit", required = true, num_args = 1.., value_delimiter = ',')]
        units: Vec<String>,
    },
    /// Record what has been done so far on an accepted ticket.
    Progress {
        ticket: String,
        #[arg(long)]
        note: String,
    },
    /// 补充材料: wait for the citizen; the completion clock stops until `resume` (or until the
    /// citizen adds information through the hotline).
    Pause {
        ticket: String,
        /// What the unit needs from the citizen.
        #[arg(long)]
        reason: String,
    },
    /// End a wait for the citizen: the completion deadline moves by the paused working time.
    Resume {
        ticket: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// 办结: complete a ticket with the reply to the citizen.
    Complete {
        ticket: String,
        /// The reply to the citizen.
        #[arg(long)]
        reply: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StateFilter {
    Dispatched,
    Accepted,
    Returned,
    Completed,
    CalledBack,
    Archived,
    Arbitration,
}

impl StateFilter {
    fn to_proto(self) -> i32 {
        let s = match self {
            StateFilter::Dispatched => DispatchState::Dispatched,
            StateFilter::Accepted => DispatchState::Accepted,
            StateFilter::Returned => DispatchState::Returned,
            StateFilter::Completed => DispatchState::Completed,
            StateFilter::CalledBack => DispatchState::CalledBack,
            StateFilter::Archived => DispatchState::Archived,
            StateFilter::Arbitration => DispatchState::Arbitration,
        };
        s as i32
    }
}

/// The settings file: the same keys as the flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    endpoint: Option<String>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// Effective credentials after flags, environment and file were weighed.
#[derive(Clone)]
pub struct Settings {
    pub endpoint: String,
    pub token: String,
    pub tls: ClientTls,
}

/// Never prints the token.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("token", &"<redacted>")
            .field("tls", &self.tls)
            .finish()
    }
}

fn default_config_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/minyi/handler.toml"))
}

fn read_file_settings(path: &Path) -> anyhow::Result<FileSettings> {
    Figment::from(Toml::file_exact(path))
        .extract()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

impl Settings {
    pub fn resolve(c: &Credentials) -> anyhow::Result<Settings> {
        let file_path = match &c.config {
            Some(p) if !p.is_file() => {
                anyhow::bail!("the config file {} does not exist", p.display())
            }
            Some(p) => Some(p.clone()),
            None => default_config_path().filter(|p| p.is_file()),
        };
        let file = match &file_path {
            Some(p) => read_file_settings(p)?,
            None => FileSettings::default(),
        };
        let non_empty =
            |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let endpoint = non_empty(c.endpoint.clone())
            .or_else(|| non_empty(file.endpoint))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let token = non_empty(c.token.clone())
            .or_else(|| non_empty(file.token))
            .with_context(|| {
                let where_ = file_path
                    .or_else(default_config_path)
                    .map_or_else(|| "~/.config/minyi/handler.toml".into(), |p| p.display().to_string());
                format!(
                    "no handler token: pass --token, set MINYI_HANDLER_TOKEN, or put `token = \"…\"` in {where_}; \
                     a development cluster (`minyi dev`) writes one to data/dev/credentials.json under the key `handler`"
                )
            })?;
        let tls = ClientTls {
            ca_file: c.ca_file.clone().or(file.ca_file),
            cert_file: c.client_cert.clone().or(file.client_cert),
            key_file: c.client_key.clone().or(file.client_key),
        };
        Ok(Settings {
            endpoint,
            token,
            tls,
        })
    }

    /// The unit the token names, read without verifying it (the server verifies): only to
    /// word confirmations.
    fn unit(&self) -> Option<String> {
        let payload = self.token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        claims.get("unit")?.as_str().map(str::to_owned)
    }
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Client = DispatchServiceClient<InterceptedService<Channel, Bearer>>;

async fn connect(s: &Settings) -> anyhow::Result<Client> {
    // The agent CLI's way to dial: same endpoint checks, TLS, same "cannot reach" wording.
    let channel = crate::tls::connect(&s.endpoint, &s.tls).await?;
    client(channel, &s.token)
}

/// A dispatch client that sends `token` with every call.
pub(crate) fn client(channel: Channel, token: &str) -> anyhow::Result<Client> {
    let header: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .context("the token is not valid header text")?;
    Ok(DispatchServiceClient::with_interceptor(
        channel,
        Bearer(header),
    ))
}

/// One plain sentence for a gRPC error.
pub fn explain(status: &tonic::Status, endpoint: &str) -> String {
    use tonic::Code;
    match status.code() {
        // The server already says whose ticket it is or what the role may not do.
        Code::PermissionDenied => status.message().to_owned(),
        Code::FailedPrecondition => format!("cannot do that now: {}", status.message()),
        Code::Unauthenticated => format!(
            "your token was refused (expired or wrong); get a new handler token and pass it with \
             --token or MINYI_HANDLER_TOKEN (server said: {})",
            status.message()
        ),
        Code::Unavailable => format!("cannot reach Minyi at {endpoint} ({})", status.message()),
        Code::Aborted => format!(
            "the ticket changed meanwhile; show it again and retry: {}",
            status.message()
        ),
        Code::AlreadyExists => format!("already done: {}", status.message()),
        Code::Internal | Code::Unknown => format!(
            "Minyi failed to answer ({}); try again, and report it if it persists",
            status.message()
        ),
        // InvalidArgument lists every bad field; NotFound says which ticket.
        _ => crate::client::explain(status),
    }
}

/// Terminal output: colour only on a terminal and without `NO_COLOR`.
pub(crate) struct Out {
    pub(crate) json: bool,
    color: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        let color =
            !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Out { json, color }
    }

    /// Writes one line and flushes it, so a pipe sees each entry as it arrives.
    pub(crate) fn line(&self, s: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{s}")?;
        out.flush()
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }

    fn alert(&self, s: &str) -> String {
        self.paint("1;31", s)
    }

    fn state(&self, s: &str) -> String {
        let code = match s {
            "dispatched" => "33",
            "accepted" => "36",
            "returned" => "35",
            "completed" | "called_back" => "32",
            _ => "2",
        };
        self.paint(code, s)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    reader_gone_is_fine(execute(cli).await)
}

/// A command's result, where the reader going away (`| head`) is not an error.
pub(crate) fn reader_gone_is_fine(r: anyhow::Result<()>) -> anyhow::Result<()> {
    match r {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli.credentials)?;
    let out = Out::new(cli.credentials.json);
    let mut client = connect(&settings).await?;
    let endpoint = settings.endpoint.clone();
    let fail = |s: tonic::Status| anyhow::anyhow!(explain(&s, &endpoint));
    let me = settings.unit();
    let (t, msg) = match cli.command {
        HandlerCommand::Inbox { states, limit } => {
            return inbox(&client, &out, states, limit, &endpoint).await;
        }
        HandlerCommand::Watch { from } => return watch(&mut client, &out, from, &endpoint).await,
        HandlerCommand::Show { ticket } => {
            let t = client
                .get_ticket(GetTicketRequest { ticket })
                .await
                .map_err(fail)?
                .into_inner();
            let text = if out.json {
                ticket_json(&t).to_string()
            } else {
                ticket_human(&t, &out, Utc::now())
            };
            out.line(&text)?;
            return Ok(());
        }
        HandlerCommand::Audit { ticket } => {
            return audit(&mut client, &out, ticket, |s| explain(s, &endpoint)).await;
        }
        HandlerCommand::Accept { ticket } => {
            let t = client
                .accept(AcceptRequest {
                    ticket,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let unit = me.unwrap_or_else(|| t.lead_unit.clone());
            let msg = if unit == t.lead_unit {
                format!(
                    "{} accepted by {unit}; complete by {}",
                    t.tracking_number,
                    beijing(t.complete_by.as_ref())
                )
            } else if t.co_handlers.iter().any(|c| c.unit == unit && c.whistled) {
                format!(
                    "{}: {unit} reported in (吹哨报到); lead {}",
                    t.tracking_number,
                    unit_label(&t.lead_unit, &t.lead_unit_name)
                )
            } else {
                format!(
                    "{} accepted by {unit} as co-handler; lead {}, complete by {}",
                    t.tracking_number,
                    unit_label(&t.lead_unit, &t.lead_unit_name),
                    beijing(t.complete_by.as_ref())
                )
            };
            (t, msg)
        }
        HandlerCommand::Return {
            ticket,
            reason,
            rule,
        } => {
            let t = client
                .r#return(ReturnRequest {
                    ticket,
                    reason,
                    catalog_rule: rule.clone(),
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let unit = me.unwrap_or_else(|| t.lead_unit.clone());
            let msg = format!(
                "{} returned by {unit} (rule {rule}); a dispatcher will send it on",
                t.tracking_number
            );
            (t, msg)
        }
        HandlerCommand::Extend {
            ticket,
            days,
            reason,
        } => {
            let t = client
                .request_extension(RequestExtensionRequest {
                    ticket,
                    working_days: days,
                    reason,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!(
                "{}: {days} more working day{} requested; until a dispatcher approves, complete by {}",
                t.tracking_number,
                if days == 1 { "" } else { "s" },
                beijing(t.complete_by.as_ref())
            );
            (t, msg)
        }
        HandlerCommand::Whistle {
            ticket,
            units,
            note,
        } => {
            let t = client
                .whistle(WhistleRequest {
                    ticket,
                    units: units.clone(),
                    note,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!(
                "{}: whistled {} (吹哨); they report in by accepting",
                t.tracking_number,
                named_units(&t, &units)
            );
            (t, msg)
        }
        HandlerCommand::Cohandle { ticket, units } => {
            let t = client
                .add_co_handlers(AddCoHandlersRequest {
                    ticket,
                    units: units.clone(),
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!(
                "{}: co-handlers added: {}",
                t.tracking_number,
                named_units(&t, &units)
            );
            (t, msg)
        }
        HandlerCommand::Progress { ticket, note } => {
            let t = client
                .add_progress(AddProgressRequest {
                    ticket,
                    note,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!(
                "{}: progress note recorded ({} so far); complete by {}",
                t.tracking_number,
                t.progress.len(),
                beijing(t.complete_by.as_ref())
            );
            (t, msg)
        }
        HandlerCommand::Pause { ticket, reason } => {
            let t = client
                .pause_for_citizen(PauseForCitizenRequest {
                    ticket,
                    reason,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!(
                "{}: waiting for the citizen; the completion clock is paused (was due {})",
                t.tracking_number,
                beijing(t.complete_by.as_ref())
            );
            (t, msg)
        }
        HandlerCommand::Resume { ticket, note } => {
            let t = client
                .resume(ResumeRequest {
                    ticket,
                    note,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let msg = format!(
                "{}: the clock runs again; complete by {}",
                t.tracking_number,
                beijing(t.complete_by.as_ref())
            );
            (t, msg)
        }
        HandlerCommand::Complete { ticket, reply } => {
            let t = client
                .complete(CompleteRequest {
                    ticket,
                    reply,
                    expected_version: 0,
                })
                .await
                .map_err(fail)?
                .into_inner();
            let unit = me.unwrap_or_else(|| t.lead_unit.clone());
            let msg = format!(
                "{} completed by {unit} at {}; the citizen will be called back",
                t.tracking_number,
                beijing(t.completed_at.as_ref())
            );
            (t, msg)
        }
    };
    if out.json {
        out.line(&ticket_json(&t).to_string())?;
    } else {
        out.line(&msg)?;
    }
    Ok(())
}

/// Prints a ticket's whole audit trail a page at a time, as the pages arrive; `explain` words
/// a gRPC error.
pub(crate) async fn audit(
    client: &mut Client,
    out: &Out,
    ticket: String,
    explain: impl Fn(&tonic::Status) -> String,
) -> anyhow::Result<()> {
    let mut page_token = String::new();
    loop {
        let r = client
            .list_audit(ListAuditRequest {
                ticket: ticket.clone(),
                page_size: MAX_PAGE,
                page_token,
            })
            .await
            .map_err(|s| anyhow::anyhow!(explain(&s)))?
            .into_inner();
        for a in &r.entries {
            if out.json {
                out.line(&audit_json(a).to_string())?;
            } else {
                out.line(&audit_human(a, out))?;
            }
        }
        page_token = r.next_page_token;
        if page_token.is_empty() {
            return Ok(());
        }
    }
}

/// The first `limit` tickets of a paged list call, `call(page_size, page_token)` returning a
/// page and the next token; and whether more remain.
pub(crate) async fn first_tickets<F, Fut>(
    limit: u32,
    mut call: F,
) -> anyhow::Result<(Vec<DispatchTicket>, bool)>
where
    F: FnMut(u32, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<DispatchTicket>, String)>>,
{
    let mut tickets = Vec::new();
    let mut page_token = String::new();
    let mut more = false;
    while (tickets.len() as u64) < u64::from(limit) {
        let want = (limit - tickets.len() as u32).min(MAX_PAGE);
        let (page, next) = call(want, page_token).await?;
        tickets.extend(page);
        page_token = next;
        more = !page_token.is_empty();
        if !more {
            break;
        }
    }
    tickets.truncate(limit as usize);
    Ok((tickets, more))
}

async fn inbox(
    client: &Client,
    out: &Out,
    states: Vec<StateFilter>,
    limit: u32,
    endpoint: &str,
) -> anyhow::Result<()> {
    let states: Vec<i32> = states.into_iter().map(StateFilter::to_proto).collect();
    let (tickets, more) = first_tickets(limit, |page_size, page_token| {
        let mut client = client.clone();
        let states = states.clone();
        async move {
            let r = client
                .list_inbox(ListInboxRequest {
                    states,
                    page_size,
                    page_token,
                })
                .await
                .map_err(|s| anyhow::anyhow!(explain(&s, endpoint)))?
                .into_inner();
            Ok((r.tickets, r.next_page_token))
        }
    })
    .await?;
    if out.json {
        out.line(
            &json!({
                "tickets": tickets.iter().map(ticket_json).collect::<Vec<_>>(),
                "more": more,
            })
            .to_string(),
        )?;
        return Ok(());
    }
    out.line(&inbox_table(&tickets, out, Utc::now(), more))?;
    Ok(())
}

fn inbox_table(tickets: &[DispatchTicket], out: &Out, now: DateTime<Utc>, more: bool) -> String {
    if tickets.is_empty() {
        return "no tickets in your inbox".to_owned();
    }
    let cols = [20, 11, 32, 14, 16, 16];
    let header = [
        "TRACKING",
        "STATE",
        "TITLE",
        "LEAD",
        "ACCEPT BY",
        "COMPLETE BY",
    ];
    let mut s = String::new();
    let head: Vec<String> = header.iter().zip(cols).map(|(h, w)| pad(h, w)).collect();
    let _ = writeln!(s, "{}  FLAG", out.bold(&head.join("  ")));
    for t in tickets {
        let state = state_name(t.state);
        let lead = if t.lead_unit_name.is_empty() {
            t.lead_unit.clone()
        } else {
            t.lead_unit_name.clone()
        };
        let flag = overdue(t, now).unwrap_or("");
        let cells = [
            pad(&t.tracking_number, cols[0]),
            out.state(&pad(state, cols[1])),
            pad(&truncate(&title_of(t), cols[2]), cols[2]),
            pad(&truncate(&lead, cols[3]), cols[3]),
            pad(&beijing(t.accept_by.as_ref()), cols[4]),
            pad(&beijing(t.complete_by.as_ref()), cols[5]),
        ];
        let row = format!("{}  {}", cells.join("  "), out.alert(flag));
        let _ = writeln!(s, "{}", row.trim_end());
    }
    let _ = write!(
        s,
        "{}",
        out.dim(&format!(
            "{} ticket{}{}; times are Beijing time",
            tickets.len(),
            if tickets.len() == 1 { "" } else { "s" },
            if more { " (more: raise --limit)" } else { "" }
        ))
    );
    s
}

/// Whether a deadline that matters in the ticket's state has passed.
fn overdue(t: &DispatchTicket, now: DateTime<Utc>) -> Option<&'static str> {
    let past = |ts: Option<&Timestamp>| ts.and_then(from_timestamp).is_some_and(|d| now > d);
    match state_name(t.state) {
        "dispatched" if past(t.accept_by.as_ref()) => Some("ACCEPT OVERDUE"),
        "dispatched" | "accepted" if past(t.complete_by.as_ref()) => Some("OVERDUE"),
        _ => None,
    }
}

/// Why the stream stopped, and whether trying again can help.
fn retryable(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

async fn watch(client: &mut Client, out: &Out, from: i64, endpoint: &str) -> anyhow::Result<()> {
    let mut cursor = from;
    let mut backoff = BACKOFF_MIN;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let opened = tokio::select! {
            r = client.watch_inbox(WatchInboxRequest { after_cursor: cursor }) => r,
            _ = &mut ctrl_c => return Ok(()),
        };
        let broke = match opened {
            Err(s) => s,
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    let next = tokio::select! {
                        m = stream.message() => m,
                        _ = &mut ctrl_c => return Ok(()),
                    };
                    match next {
                        Ok(Some(e)) => {
                            cursor = e.cursor;
                            backoff = BACKOFF_MIN;
                            let line = if out.json {
                                inbox_entry_json(&e).to_string()
                            } else {
                                entry_human(&e, out)
                            };
                            out.line(&line)?;
                        }
                        Ok(None) => {
                            break tonic::Status::unavailable("the server ended the stream");
                        }
                        Err(s) => break s,
                    }
                }
            }
        };
        if !retryable(&broke) {
            anyhow::bail!(explain(&broke, endpoint));
        }
        eprintln!(
            "inbox stream interrupted: {}; reconnecting in {:.1} s{}",
            explain(&broke, endpoint),
            backoff.as_secs_f64(),
            if cursor >= 0 {
                format!(" after cursor {cursor}")
            } else {
                String::new()
            }
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn entry_human(e: &InboxEntry, out: &Out) -> String {
    let at = beijing_secs(e.at.as_ref());
    let kind = match e.kind.as_str() {
        "redo" => out.alert(&pad(&e.kind, 17)),
        _ => out.bold(&pad(&e.kind, 17)),
    };
    format!(
        "{at}  {kind}  {}  {}  accept by {}",
        pad(&e.tracking_number, 20),
        pad(&truncate(&one_line(&e.title), 32), 32),
        beijing(e.accept_by.as_ref())
    )
}

/// Details for a person; times in Beijing time.
pub(crate) fn ticket_human(t: &DispatchTicket, out: &Out, now: DateTime<Utc>) -> String {
    let mut s = String::new();
    // Not dispatched (yet): the ticket's status, e.g. needs_dispatcher.
    let state = match state_name(t.state) {
        "unspecified" => minyi_core::petition::TicketStatus::from_proto(t.status)
            .map_or("unspecified", |s| s.as_str()),
        state => state,
    };
    let _ = write!(
        s,
        "{}  [{}]",
        out.bold(&t.tracking_number),
        out.state(state)
    );
    if let Some(flag) = overdue(t, now) {
        let _ = write!(s, "  {}", out.alert(flag));
    }
    let _ = writeln!(s);
    let mut field = |name: &str, value: &str| {
        if !value.is_empty() {
            let _ = writeln!(s, "  {}{value}", pad(&format!("{name}:"), 14));
        }
    };
    field("title", &t.title);
    field("text", &t.text);
    field("address", &t.address);
    let caller = t.caller.clone().unwrap_or_default();
    if caller.anonymous {
        field("caller", "(anonymous)");
    } else {
        let parts: Vec<&str> = [&caller.name, &caller.phone, &caller.id_number]
            .into_iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty())
            .collect();
        field("caller", &parts.join("  "));
    }
    field(
        "received",
        &format!(
            "{}  (times are Beijing time)",
            beijing(t.received_at.as_ref())
        ),
    );
    let lead = unit_label(&t.lead_unit, &t.lead_unit_name);
    field(
        "lead",
        &format!(
            "{lead}{}",
            if t.manual {
                "  (dispatched by hand)"
            } else {
                ""
            }
        ),
    );
    for c in &t.co_handlers {
        let how = match (c.whistled, c.accepted) {
            (true, true) => "whistled, reported in",
            (true, false) => "whistled, not reported in yet",
            (false, true) => "co-handler, accepted",
            (false, false) => "co-handler, not accepted yet",
        };
        field(
            "co-handler",
            &format!("{}  ({how})", unit_label(&c.unit, &c.unit_name)),
        );
    }
    field("dispatched", &opt_time(t.dispatched_at.as_ref()));
    field("accept by", &opt_time(t.accept_by.as_ref()));
    field("accepted", &opt_time(t.accepted_at.as_ref()));
    field("complete by", &opt_time(t.complete_by.as_ref()));
    field("completed", &opt_time(t.completed_at.as_ref()));
    if t.redo_count > 0 {
        field("redone", &format!("{} time(s)", t.redo_count));
    }
    field("reply", &t.reply);
    if let Some(r) = &t.routing {
        field("routing", &routing_human(r));
        // What a dispatcher chooses from, while the ticket waits for one.
        if t.lead_unit.is_empty() || state == "returned" {
            for (i, g) in r.suggestions.iter().enumerate() {
                let unit = if g.unit.is_empty() {
                    "(territorial: unit depends on the street)"
                } else {
                    &g.unit
                };
                field(
                    "suggestion",
                    &format!(
                        "{}. {} {} → {unit}  ({:.2})",
                        i + 1,
                        g.item_code,
                        g.item_name,
                        g.confidence
                    ),
                );
            }
        }
    }
    for r in &t.returns {
        field(
            "returned",
            &format!(
                "{}  by {}: {} (rule {})",
                beijing(r.at.as_ref()),
                r.unit,
                r.reason,
                r.catalog_rule
            ),
        );
    }
    for n in &t.progress {
        field(
            "progress",
            &format!(
                "{}  {} ({}): {}",
                beijing(n.at.as_ref()),
                n.unit,
                n.author,
                n.text
            ),
        );
    }
    for e in &t.extensions {
        let mut line = format!(
            "{}  {} working day(s): {} — {}",
            beijing(e.requested_at.as_ref()),
            e.working_days,
            e.reason,
            e.decision
        );
        if !e.note.is_empty() {
            let _ = write!(line, " ({})", e.note);
        }
        field("extension", &line);
    }
    if let Some(c) = &t.callback {
        let mut line = format!("{}  {}", beijing(c.at.as_ref()), c.rating);
        if !c.cause.is_empty() {
            let _ = write!(line, ", cause: {}", c.cause);
        }
        if !c.note.is_empty() {
            let _ = write!(line, " — {}", c.note);
        }
        field("callback", &line);
    }
    for f in &t.follow_ups {
        field(
            "follow-up",
            &format!("{}  ({}) {}", beijing(f.at.as_ref()), f.author, f.text),
        );
    }
    field("id", &t.ticket_id);
    field("version", &t.version.to_string());
    if !t.audit.is_empty() {
        let shown = t.audit.len() as u64;
        if t.audit_total > shown {
            let _ = writeln!(
                s,
                "  audit trail (the last {shown} of {} lines; `minyi-handler audit {}` prints them all):",
                t.audit_total, t.tracking_number
            );
        } else {
            let _ = writeln!(s, "  audit trail:");
        }
        for a in &t.audit {
            let _ = writeln!(s, "    {}", audit_human(a, out));
        }
    }
    s.trim_end().to_owned()
}

/// One audit line: when, what, the state change, who, why, and whether it was refused.
fn audit_human(a: &AuditEntry, out: &Out) -> String {
    let who = match (a.role.as_str(), a.unit.as_str()) {
        (role, "") => format!("{} ({role})", a.actor),
        (role, unit) => format!("{} ({role}, {unit})", a.actor),
    };
    let change = if a.from_state == a.to_state || a.to_state.is_empty() {
        a.from_state.clone()
    } else {
        format!("{} → {}", a.from_state, a.to_state)
    };
    let mut line = format!(
        "{}  {}  {}  {}",
        out.dim(&beijing_secs(a.at.as_ref())),
        a.action,
        change,
        who
    );
    if !a.reason.is_empty() {
        let _ = write!(line, "  {}", one_line(&a.reason));
    }
    if !a.allowed {
        let _ = write!(line, "  {}", out.alert("REFUSED"));
    }
    line
}

fn routing_human(r: &Routing) -> String {
    let mut s = format!("{} {}", r.item_code, r.item_name);
    let mut facts = vec![r.decision.clone()];
    if !r.grade.is_empty() {
        facts.push(r.grade.clone());
    }
    // A low-confidence reason already states the confidence.
    if r.confidence > 0.0 && !r.reason.contains("confidence") {
        facts.push(format!("confidence {:.2}", r.confidence));
    }
    if !r.reason.is_empty() {
        facts.push(r.reason.clone());
    }
    let _ = write!(s, "  ({})", facts.join(", "));
    s.trim().to_owned()
}

fn named_units(t: &DispatchTicket, units: &[String]) -> String {
    units
        .iter()
        .map(|u| {
            let name = t
                .co_handlers
                .iter()
                .find(|c| &c.unit == u)
                .map_or("", |c| c.unit_name.as_str());
            unit_label(u, name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn unit_label(code: &str, name: &str) -> String {
    match (code, name) {
        ("", _) => "-".into(),
        (code, "") => code.to_owned(),
        (code, name) => format!("{name} ({code})"),
    }
}

pub(crate) fn title_of(t: &DispatchTicket) -> String {
    if t.title.trim().is_empty() {
        one_line(&t.text)
    } else {
        one_line(&t.title)
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `2026-12-10 17:30` in Beijing time, `-` when absent.
pub(crate) fn beijing(ts: Option<&Timestamp>) -> String {
    ts.and_then(from_timestamp)
        .map(|d| {
            d.with_timezone(&minyi_core::clock::shanghai())
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// `2026-12-10 17:30:05` in Beijing time, `-` when absent.
fn beijing_secs(ts: Option<&Timestamp>) -> String {
    ts.and_then(from_timestamp)
        .map(|d| {
            d.with_timezone(&minyi_core::clock::shanghai())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// Like [`beijing`], empty when absent (the field line is then left out).
fn opt_time(ts: Option<&Timestamp>) -> String {
    if ts.and_then(from_timestamp).is_some() {
        beijing(ts)
    } else {
        String::new()
    }
}

/// Columns on a terminal: CJK characters take two.
fn char_width(c: char) -> usize {
    match c as u32 {
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// At most `max` columns, ending in `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        if w + char_width(c) + 1 > max {
            break;
        }
        w += char_width(c);
        out.push(c);
    }
    out.push('…');
    out
}

pub(crate) fn pad(s: &str, cols: usize) -> String {
    let w = width(s);
    format!("{s}{}", " ".repeat(cols.saturating_sub(w)))
}

/// `dispatched`, `accepted`, … for the proto enum value.
pub fn state_name(value: i32) -> &'static str {
    State::ALL
        .into_iter()
        .find(|s| s.to_proto() == value)
        .map_or("unspecified", State::as_str)
}

/// RFC 3339 in UTC.
fn rfc3339(ts: Option<&Timestamp>) -> Value {
    ts.and_then(from_timestamp).map_or(Value::Null, |d| {
        Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    })
}

/// What classification decided (shared by `minyi-handler` and `minyi petition`): the item and
/// units of an automatic routing, or why a dispatcher is needed and the suggestions shown to
/// them; `duplicate_of` when linked to an open ticket.
pub(crate) fn routing_json(r: &Routing) -> Value {
    json!({
        "decision": r.decision,
        "item_code": r.item_code,
        "item_name": r.item_name,
        "lead_unit": r.lead_unit,
        "co_units": r.co_units,
        "grade": r.grade,
        "confidence": r.confidence,
        "suggestions": r.suggestions.iter().map(|s| json!({
            "item_code": s.item_code,
            "item_name": s.item_name,
            "path": s.path,
            "unit": s.unit,
            "confidence": s.confidence,
        })).collect::<Vec<_>>(),
        "street": r.street,
        "community": r.community,
        "reason": r.reason,
        "model_version": r.model_version,
        "catalog_version": r.catalog_version,
        "accept_hours": r.accept_hours,
        "respond_hours": r.respond_hours,
        "complete_days": r.complete_days,
        "duplicate_of": r.duplicate_of,
        "routed_at": rfc3339(r.routed_at.as_ref()),
    })
}

/// A dispatch ticket as JSON: states by name, times as RFC 3339.
pub fn ticket_json(t: &DispatchTicket) -> Value {
    let caller = t.caller.clone().unwrap_or_default();
    json!({
        "ticket_id": t.ticket_id,
        "tracking_number": t.tracking_number,
        "state": state_name(t.state),
        "status": minyi_core::petition::TicketStatus::from_proto(t.status).map(|s| s.as_str()),
        "version": t.version,
        "title": t.title,
        "text": t.text,
        "address": t.address,
        "caller": {
            "anonymous": caller.anonymous,
            "name": caller.name,
            "phone": caller.phone,
            "id_number": caller.id_number,
        },
        "received_at": rfc3339(t.received_at.as_ref()),
        "routing": t.routing.as_ref().map(routing_json),
        "lead_unit": t.lead_unit,
        "lead_unit_name": t.lead_unit_name,
        "co_handlers": t.co_handlers.iter().map(|c| json!({
            "unit": c.unit,
            "unit_name": c.unit_name,
            "whistled": c.whistled,
            "accepted": c.accepted,
        })).collect::<Vec<_>>(),
        "manual": t.manual,
        "dispatched_at": rfc3339(t.dispatched_at.as_ref()),
        "accept_by": rfc3339(t.accept_by.as_ref()),
        "complete_by": rfc3339(t.complete_by.as_ref()),
        "accepted_at": rfc3339(t.accepted_at.as_ref()),
        "completed_at": rfc3339(t.completed_at.as_ref()),
        "reply": t.reply,
        "returns": t.returns.iter().map(|r| json!({
            "unit": r.unit,
            "reason": r.reason,
            "catalog_rule": r.catalog_rule,
            "at": rfc3339(r.at.as_ref()),
        })).collect::<Vec<_>>(),
        "progress": t.progress.iter().map(|n| json!({
            "unit": n.unit,
            "author": n.author,
            "text": n.text,
            "at": rfc3339(n.at.as_ref()),
        })).collect::<Vec<_>>(),
        "extensions": t.extensions.iter().map(|e| json!({
            "working_days": e.working_days,
            "reason": e.reason,
            "decision": e.decision,
            "note": e.note,
            "requested_at": rfc3339(e.requested_at.as_ref()),
        })).collect::<Vec<_>>(),
        "callback": t.callback.as_ref().map(|c| json!({
            "rating": c.rating,
            "cause": c.cause,
            "note": c.note,
            "at": rfc3339(c.at.as_ref()),
        })),
        "paused": t.paused,
        "pauses": t.pauses.iter().map(|p| json!({
            "reason": p.reason,
            "by": p.by,
            "from": rfc3339(p.from.as_ref()),
            "to": rfc3339(p.to.as_ref()),
            "working_seconds": p.working_seconds,
        })).collect::<Vec<_>>(),
        "redo_count": t.redo_count,
        "audit": t.audit.iter().map(audit_json).collect::<Vec<_>>(),
        "audit_total": t.audit_total,
        "follow_ups": t.follow_ups.iter().map(|f| json!({
            "text": f.text,
            "author": f.author,
            "at": rfc3339(f.at.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

pub fn audit_json(a: &AuditEntry) -> Value {
    json!({
        "at": rfc3339(a.at.as_ref()),
        "actor": a.actor,
        "role": a.role,
        "unit": a.unit,
        "action": a.action,
        "from_state": a.from_state,
        "to_state": a.to_state,
        "reason": a.reason,
        "allowed": a.allowed,
    })
}

pub fn inbox_entry_json(e: &InboxEntry) -> Value {
    json!({
        "cursor": e.cursor,
        "ticket_id": e.ticket_id,
        "tracking_number": e.tracking_number,
        "kind": e.kind,
        "at": rfc3339(e.at.as_ref()),
        "title": e.title,
        "accept_by": rfc3339(e.accept_by.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(rfc: &str) -> Timestamp {
        minyi_core::event::timestamp(DateTime::parse_from_rfc3339(rfc).unwrap().to_utc())
    }

    #[test]
    fn the_routing_line_states_the_confidence_once() {
        let mut r = Routing {
            decision: "needs_dispatcher".into(),
            item_code: "CG-03-021".into(),
            item_name: "占用绿地建房扰民投诉".into(),
            confidence: 0.22,
            reason: "confidence 0.22 is below the auto-dispatch threshold 0.93".into(),
            ..Routing::default()
        };
        assert_eq!(
            routing_human(&r),
            "CG-03-021 占用绿地建房扰民投诉  (needs_dispatcher, confidence 0.22 is below the \
             auto-dispatch threshold 0.93)"
        );
        r.reason = "no street resolved for a territorial item".into();
        assert!(routing_human(&r).contains("confidence 0.22, no street resolved"));
    }

    #[test]
    fn times_show_in_beijing_and_json_in_utc() {
        let t = ts("2026-12-10T09:30:00Z");
        assert_eq!(beijing(Some(&t)), "2026-12-10 17:30");
        assert_eq!(rfc3339(Some(&t)), json!("2026-12-10T09:30:00Z"));
        assert_eq!(beijing(None), "-");
        assert_eq!(rfc3339(None), Value::Null);
    }

    #[test]
    fn cjk_text_is_cut_and_padded_by_columns() {
        assert_eq!(width("光明街道"), 8);
        assert_eq!(truncate("小区门口垃圾堆积", 9), "小区门口…");
        assert_eq!(width(&truncate("小区门口垃圾堆积", 9)), 9);
        assert_eq!(truncate("short", 9), "short");
        assert_eq!(pad("光明", 6), "光明  ");
    }

    #[test]
    fn overdue_depends_on_the_state() {
        let now = DateTime::parse_from_rfc3339("2026-12-11T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut t = DispatchTicket {
            state: DispatchState::Dispatched as i32,
            accept_by: Some(ts("2026-12-10T00:00:00Z")),
            complete_by: Some(ts("2026-12-20T00:00:00Z")),
            ..DispatchTicket::default()
        };
        assert_eq!(overdue(&t, now), Some("ACCEPT OVERDUE"));
        t.state = DispatchState::Accepted as i32;
        assert_eq!(overdue(&t, now), None);
        t.complete_by = Some(ts("2026-12-10T12:00:00Z"));
        assert_eq!(overdue(&t, now), Some("OVERDUE"));
        t.state = DispatchState::Completed as i32;
        assert_eq!(overdue(&t, now), None);
    }

    #[test]
    fn a_watched_entry_is_one_line() {
        let e = InboxEntry {
            cursor: 7,
            ticket_id: "id".into(),
            tracking_number: "MY-20261126-000012".into(),
            kind: "dispatched".into(),
            at: Some(ts("2026-11-26T02:00:05Z")),
            title: "路灯不亮\n第二行".into(),
            accept_by: Some(ts("2026-11-26T04:00:00Z")),
        };
        let out = Out {
            json: false,
            color: false,
        };
        assert_eq!(
            entry_human(&e, &out),
            "2026-11-26 10:00:05  dispatched         MY-20261126-000012    路灯不亮 第二行                   accept by 2026-11-26 12:00"
        );
        assert_eq!(inbox_entry_json(&e)["at"], "2026-11-26T02:00:05Z");
    }

    #[test]
    fn state_names_follow_the_proto_numbers() {
        assert_eq!(state_name(DispatchState::Dispatched as i32), "dispatched");
        assert_eq!(state_name(DispatchState::CalledBack as i32), "called_back");
        assert_eq!(state_name(0), "unspecified");
        assert_eq!(
            StateFilter::CalledBack.to_proto(),
            DispatchState::CalledBack as i32
        );
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = explain(
            &tonic::Status::failed_precondition("ticket is dispatched: cannot complete"),
            "http://x",
        );
        assert_eq!(
            e,
            "cannot do that now: ticket is dispatched: cannot complete"
        );
        let e = explain(
            &tonic::Status::unavailable("tcp connect error"),
            "http://x:1",
        );
        assert!(e.starts_with("cannot reach Minyi at http://x:1"), "{e}");
        let e = explain(&tonic::Status::unauthenticated("expired"), "http://x");
        assert!(
            e.starts_with("your token was refused (expired or wrong)"),
            "{e}"
        );
        let denied = "this ticket is assigned to 公明街道 (ST-GOM), not to you (ST-GM)";
        assert_eq!(
            explain(&tonic::Status::permission_denied(denied), "http://x"),
            denied
        );
    }

    #[test]
    fn the_unit_is_read_from_the_token() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"h","role":"handler","unit":"ST-GM","exp":1,"iat":0}"#);
        let s = Settings {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: format!("e30.{claims}.sig"),
            tls: ClientTls::default(),
        };
        assert_eq!(s.unit().as_deref(), Some("ST-GM"));
        let s = Settings {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: "garbage".into(),
            tls: ClientTls::default(),
        };
        assert_eq!(s.unit(), None);
    }

    #[test]
    fn flags_beat_the_file_and_a_missing_token_says_how_to_get_one() {
        let dir = tempfile_dir();
        let path = dir.join("handler.toml");
        std::fs::write(
            &path,
            "endpoint = \"http://file:1\"\ntoken = \"from-file\"\nca_file = \"/file/ca.pem\"\n",
        )
        .unwrap();
        let creds =
            |endpoint: Option<&str>, token: Option<&str>, config: Option<&Path>| Credentials {
                endpoint: endpoint.map(Into::into),
                ca_file: None,
                client_cert: None,
                client_key: None,
                token: token.map(Into::into),
                config: config.map(Path::to_path_buf),
                json: false,
            };
        let s = Settings::resolve(&creds(None, None, Some(&path))).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_str()),
            ("http://file:1", "from-file")
        );
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/file/ca.pem")));
        let s = Settings::resolve(&creds(Some("http://flag:2"), Some("t"), Some(&path))).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.token.as_str()),
            ("http://flag:2", "t")
        );
        let empty = dir.join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let e = Settings::resolve(&creds(None, None, Some(&empty)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MINYI_HANDLER_TOKEN") && e.contains("credentials.json"),
            "{e}"
        );
        let e = Settings::resolve(&creds(None, None, Some(&dir.join("nope.toml"))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("minyi-handler-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
