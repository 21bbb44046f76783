//! Open311 GeoReport v2 over HTTP, under `/open311/v2/`: the standard 311 apps speak.
//!
//! A 311 app is a front end like the call centre: it files petitions with a Minyi token of
//! role agent or admin as its `api_key`, and reads back their progress.
//!
//! | method and path (`.json` or `.xml`)      | what it does                                      |
//! |------------------------------------------|---------------------------------------------------|
//! | `GET services`                           | catalog items as services                         |
//! | `GET services/{service_code}`            | an item's attribute definitions                   |
//! | `POST requests`                          | files a petition (channel `open311`)              |
//! | `GET requests`                           | Open311 petitions, filtered                       |
//! | `GET requests/{id}`                      | one petition, by tracking number or id            |
//! | `GET tokens/{token}`                     | the token *is* the tracking number                |
//! | `GET servicerequestupdates`              | receipt and follow-ups as updates (extension)     |
//!
//! Decisions where the spec leaves room:
//! - `api_key` is read from the form body or the query string only (not a header), as the
//!   spec places it. Missing, invalid, expired or wrong-role keys all answer **403**, the
//!   status the spec gives for an api_key "not provided or invalid"; the description says
//!   which. GET methods are public, as in the spec, and only ever show Open311-channel
//!   petitions, without any personal data: a hotline caller never agreed to publication.
//! - `service_code` is optional on POST: without it Minyi's classifier decides. A given code
//!   must exist (400 otherwise) and is kept in the ticket title as `[code] name`.
//! - A location is required (lat+long, address_string or address_id), as the spec says.
//! - An unknown format extension answers 404 (that representation does not exist), in JSON.
//! - `jurisdiction_id`, when given, must be ours: 404 otherwise, as the spec says.
//! - `GET requests` without dates covers the last 90 days; a range may not span more than
//!   90 days; at most 1000 requests, newest first.
//! - `service_code` is the client's choice, else the item classification dispatched under
//!   (empty while a dispatcher decides). `agency_responsible` is the lead unit's name once
//!   the ticket is dispatched, empty before and while nobody holds it (returned to a dispatcher,
//!   in arbitration). `expected_datetime` is the completion deadline in working days (moved by
//!   approved extensions), empty under the same conditions. `requested_datetime` is the
//!   receipt time in Beijing time (+08:00).

mod doc;
mod error;
mod requests;
mod services;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use minyi_catalog::{Catalog, LiveCatalog};
use minyi_core::auth::{Role, TokenAuthority};
use minyi_core::clock::{Clock, SystemClock};
use minyi_core::petition::{Channel, NewPetition};
use minyi_core::store::{StoreError, TicketQuery, TicketRecord};
use tracing::instrument;

use crate::IntakeApi;
use crate::api::SubmitError;

pub use doc::Format;
use doc::{Doc, Node};
pub use error::Failure;
use requests::Params;

/// The jurisdiction Minyi answers for unless configured otherwise.
pub const DEFAULT_JURISDICTION: &str = "guangming.shenzhen.gov.cn";

/// Most service requests or updates one listing returns (the spec's figure).
pub const MAX_LISTED: usize = 1000;

/// Widest date range of a listing, and the default one (the spec's figure).
pub const MAX_RANGE_DAYS: i64 = 90;

/// What the Open311 endpoints need.
#[derive(Clone)]
pub struct Open311State {
    /// Files petitions (validation, sealing of personal data, outbox) and reads tickets.
    pub intake: IntakeApi,
    /// Catalog items are the services; requests in flight keep the version they started with.
    pub catalog: LiveCatalog,
    /// Verifies `api_key`s, which are Minyi bearer tokens.
    pub authority: TokenAuthority,
    /// Compared with a client's `jurisdiction_id`, when it sends one.
    pub jurisdiction_id: String,
    /// "Now" for the default date ranges of listings.
    pub clock: Arc<dyn Clock>,
}

impl Open311State {
    /// State for [`DEFAULT_JURISDICTION`] on the system clock.
    /// `catalog` may be a [`LiveCatalog`] the process keeps current.
    pub fn new(
        intake: IntakeApi,
        catalog: impl Into<LiveCatalog>,
        authority: TokenAuthority,
    ) -> Self {
        Open311State {
            intake,
            catalog: catalog.into(),
            authority,
            jurisdiction_id: DEFAULT_JURISDICTION.to_owned(),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_jurisdiction(mut self, jurisdiction_id: impl Into<String>) -> Self {
        self.jurisdiction_id = jurisdiction_id.into();
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current()
    }
}

/// The GeoReport v2 routes under `/open311/v2/`, ready to merge into the HTTP server.
pub fn router(state: Open311State) -> Router {
    Router::new()
        .route(
            "/open311/v2/{resource}",
            get(get_collection)
                .post(post_collection)
                .fallback(method_not_allowed),
        )
        .route(
            "/open311/v2/services/{file}",
            get(get_service).fallback(method_not_allowed),
        )
        .route(
            "/open311/v2/requests/{file}",
            get(get_request).fallback(method_not_allowed),
        )
        .route(
            "/open311/v2/tokens/{file}",
            get(get_token).fallback(method_not_allowed),
        )
        .with_state(state)
}

fn reply(format: Format, status: StatusCode, doc: &Doc) -> Response {
    let mut r = (status, doc.render(format)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

fn respond(format: Format, result: Result<Doc, Failure>) -> Response {
    match result {
        Ok(doc) => reply(format, StatusCode::OK, &doc),
        Err(f) => reply(format, f.status, &f.doc()),
    }
}

/// Splits the extension off a path segment; fails when it is not `.json` or `.xml` (the
/// failure is then answered in JSON: the format asked for is unknown).
fn split_format(segment: &str) -> Result<(&str, Format), Failure> {
    Format::split(segment).ok_or_else(|| {
        Failure::not_found(format!(
            "unknown format in {segment:?}: append .json or .xml to the resource"
        ))
    })
}

fn query_params(query: Option<String>) -> Result<Params, Failure> {
    Params::parse(query.unwrap_or_default().as_bytes())
        .ok_or_else(|| Failure::bad_request("the query string is not valid URL encoding"))
}

fn check_jurisdiction(state: &Open311State, p: &Params) -> Result<(), Failure> {
    match p.get("jurisdiction_id") {
        Some(j) if j != state.jurisdiction_id => Err(Failure::not_found(format!(
            "jurisdiction_id {j:?} was not found; this server serves {:?}",
            state.jurisdiction_id
        ))),
        _ => Ok(()),
    }
}

async fn method_not_allowed() -> Response {
    let f = Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: only POST requests.{json,xml} changes anything; everything else is GET",
    );
    reply(Format::Json, f.status, &f.doc())
}

#[instrument(skip_all, fields(resource = %resource))]
async fn get_collection(
    State(state): State<Open311State>,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (name, format) = match split_format(&resource) {
        Ok(x) => x,
        Err(f) => return respond(Format::Json, Err(f)),
    };
    let result: Result<Doc, Failure> = async {
        let p = query_params(query)?;
        check_jurisdiction(&state, &p)?;
        match name {
            "services" => Ok(services::services_doc(&state.catalog())),
            "requests" => list_requests(&state, &p).await,
            "servicerequestupdates" => list_updates(&state, &p).await,
            "discovery" | "tokens" => Err(Failure::not_found(format!(
                "{name} is not a collection here"
            ))),
            _ => Err(Failure::not_found(format!("unknown resource {name:?}"))),
        }
    }
    .await;
    respond(format, result)
}

#[instrument(skip_all, fields(resource = %resource))]
async fn post_collection(
    State(state): State<Open311State>,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (name, format) = match split_format(&resource) {
        Ok(x) => x,
        Err(f) => return respond(Format::Json, Err(f)),
    };
    let result = match name {
        "requests" => create_request(&state, query, &headers, body).await,
        "services" | "servicerequestupdates" => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{name} is read-only: use GET"),
        )),
        _ => Err(Failure::not_found(format!("unknown resource {name:?}"))),
    };
    respond(format, result)
}

#[instrument(skip_all)]
async fn get_service(
    State(state): State<Open311State>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (code, format) = match split_format(&file) {
        Ok(x) => x,
        Err(f) => return respond(Format::Json, Err(f)),
    };
    let result = (|| -> Result<Doc, Failure> {
        check_jurisdiction(&state, &query_params(query)?)?;
        let catalog = state.catalog();
        catalog
            .get(code)
            .map(services::definition_doc)
            .ok_or_else(|| Failure::not_found(format!("service_code {code:?} was not found")))
    })();
    respond(format, result)
}

#[instrument(skip_all)]
async fn get_request(
    State(state): State<Open311State>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (id, format) = match split_format(&file) {
        Ok(x) => x,
        Err(f) => return respond(Format::Json, Err(f)),
    };
    let result: Result<Doc, Failure> = async {
        check_jurisdiction(&state, &query_params(query)?)?;
        let t = find_open311(&state, id).await?;
        Ok(Doc::new(
            "service_requests",
            Node::list(
                "request",
                vec![requests::request_node(&t, &state.catalog())],
            ),
        ))
    }
    .await;
    respond(format, result)
}

#[instrument(skip_all)]
async fn get_token(
    State(state): State<Open311State>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (token, format) = match split_format(&file) {
        Ok(x) => x,
        Err(f) => return respond(Format::Json, Err(f)),
    };
    let result: Result<Doc, Failure> = async {
        check_jurisdiction(&state, &query_params(query)?)?;
        let t = find_open311(&state, token).await?;
        Ok(Doc::new(
            "service_requests",
            Node::list(
                "request",
                vec![Node::Object(vec![
                    ("service_request_id", Node::text(&t.tracking_number)),
                    ("token", Node::text(token)),
                ])],
            ),
        ))
    }
    .await;
    respond(format, result)
}

/// A ticket filed through Open311, by tracking number or id; 404 for any other.
async fn find_open311(state: &Open311State, id: &str) -> Result<TicketRecord, Failure> {
    let not_found = || Failure::not_found(format!("service_request_id {id:?} was not found"));
    let id = id.trim();
    if id.is_empty() || id.len() > 100 {
        return Err(not_found());
    }
    match state.intake.store().get_ticket(id).await {
        Ok(t) if t.channel == Channel::Open311 => Ok(t),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

async fn create_request(
    state: &Open311State,
    query: Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Doc, Failure> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.is_empty()
        && !content_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the service request as application/x-www-form-urlencoded",
        ));
    }
    let body = body.map_err(|r| Failure::new(r.status(), "the request body could not be read"))?;
    let form = Params::parse(&body)
        .ok_or_else(|| Failure::bad_request("the body is not valid URL encoding"))?;
    // Form fields first, so they win over the query string.
    let p = form.merge(query_params(query)?);

    let who = match p.get("api_key") {
        None => return Err(Failure::forbidden("api_key was not provided")),
        Some(key) => state
            .authority
            .verify(key)
            .map_err(|_| Failure::forbidden("api_key is invalid or expired"))?,
    };
    if !matches!(who.role, Role::Agent | Role::Admin) {
        return Err(Failure::forbidden(
            "api_key may not submit service requests (an agent or admin key is needed)",
        ));
    }
    check_jurisdiction(state, &p)?;

    let catalog = state.catalog();
    let limits = state.intake.limits();
    let report = requests::parse_report(&p, &catalog, &who.sub, limits.max_title_chars, |draft| {
        match NewPetition::parse(draft.clone(), limits, state.clock.now()) {
            Ok(_) => Default::default(),
            Err(v) => v,
        }
    })
    .map_err(|v| Failure::invalid(&v))?;

    let (ticket, created) =
        state
            .intake
            .submit(report.input, &who.sub)
            .await
            .map_err(|e| match e {
                SubmitError::Invalid(v) => {
                    let mut named = minyi_core::petition::Violations::default();
                    for f in v.0 {
                        named.add(requests::client_field(&f.field), f.description);
                    }
                    Failure::invalid(&named)
                }
                SubmitError::Status(s) if s.code() == tonic::Code::Unavailable => {
                    Failure::unavailable(&s.message())
                }
                SubmitError::Status(s) => Failure::internal(&s.message()),
            })?;
    tracing::info!(ticket_id = %ticket.id, created, service_code = report.service_code.as_deref().unwrap_or(""), "open311 request filed");

    let notice = if created {
        format!(
            "已受理，受理编号 {0}。Received; your tracking number is {0}.",
            ticket.tracking_number
        )
    } else {
        format!(
            "此前已受理，受理编号 {0}。Already received earlier as {0}.",
            ticket.tracking_number
        )
    };
    Ok(Doc::new(
        "service_requests",
        Node::list(
            "request",
            vec![Node::Object(vec![
                ("service_request_id", Node::text(&ticket.tracking_number)),
                ("service_notice", Node::text(notice)),
                ("account_id", Node::Null),
            ])],
        ),
    ))
}

/// The `[start, end]` window of a listing: defaults to the last 90 days, never wider.
fn window(p: &Params, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), Failure> {
    let mut bad = Vec::new();
    let mut date = |key: &str| {
        let raw = p.get(key)?;
        let parsed = requests::parse_w3c(raw);
        if parsed.is_none() {
            bad.push(format!(
                "{key}: {raw:?} is not a W3C datetime with a timezone, e.g. 2026-01-05T09:30:00+08:00"
            ));
        }
        parsed
    };
    let start = date("start_date");
    let end = date("end_date");
    if !bad.is_empty() {
        return Err(Failure {
            status: StatusCode::BAD_REQUEST,
            descriptions: bad,
        });
    }
    let range = Duration::days(MAX_RANGE_DAYS);
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (Some(s), None) => (s, (s + range).min(now.max(s))),
        (None, Some(e)) => (e - range, e),
        (None, None) => (now - range, now),
    };
    if start > end {
        return Err(Failure::bad_request("start_date is after end_date"));
    }
    if end - start > range {
        return Err(Failure::bad_request(format!(
            "start_date to end_date spans more than {MAX_RANGE_DAYS} days"
        )));
    }
    Ok((start, end))
}

/// Open311 tickets received in `[from, to]`, newest first, that `keep` accepts, at most
/// `max`. Pages through the store so filters the store cannot apply still fill the answer.
async fn scan(
    state: &Open311State,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
    mut keep: impl FnMut(&TicketRecord) -> bool,
) -> Result<Vec<TicketRecord>, Failure> {
    const PAGE: usize = 500;
    let mut out = Vec::new();
    let mut query = TicketQuery {
        status: None,
        channel: Some(Channel::Open311),
        received_after: Some(from),
        // The store's upper bound is exclusive; the spec's end_date is inclusive.
        received_before: Some(to + Duration::microseconds(1)),
        unit: None,
        limit: PAGE,
        after: None,
        ..TicketQuery::default()
    };
    loop {
        let page = state.intake.store().list_tickets(&query).await?;
        let last = page.last().map(|t| (t.received_at, t.id));
        let full = page.len() == PAGE;
        for t in page {
            if keep(&t) {
                out.push(t);
                if out.len() == max {
                    return Ok(out);
                }
            }
        }
        match last {
            Some(cursor) if full => query.after = Some(cursor),
            _ => return Ok(out),
        }
    }
}

async fn list_requests(state: &Open311State, p: &Params) -> Result<Doc, Failure> {
    let catalog = state.catalog();
    let doc = |tickets: Vec<TicketRecord>| {
        Doc::new(
            "service_requests",
            Node::list(
                "request",
                tickets
                    .iter()
                    .map(|t| requests::request_node(t, &catalog))
                    .collect(),
            ),
        )
    };
    // The spec: service_request_id overrides every other parameter.
    if let Some(ids) = p.get("service_request_id") {
        let mut found = Vec::new();
        for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if found.len() == MAX_LISTED {
                break;
            }
            match find_open311(state, id).await {
                Ok(t) => found.push(t),
                Err(f) if f.status == StatusCode::NOT_FOUND => {}
                Err(f) => return Err(f),
            }
        }
        return Ok(doc(found));
    }
    let (start, end) = window(p, state.clock.now())?;
    let codes: Option<Vec<&str>> = p.get("service_code").map(|c| {
        c.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    });
    let statuses: Option<Vec<&str>> = match p.get("status") {
        None => None,
        Some(s) => {
            let list: Vec<&str> = s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if let Some(bad) = list.iter().find(|s| !matches!(**s, "open" | "closed")) {
                return Err(Failure::bad_request(format!(
                    "status: {bad:?} is not open or closed"
                )));
            }
            Some(list)
        }
    };
    let tickets = scan(state, start, end, MAX_LISTED, |t| {
        codes
            .as_ref()
            .is_none_or(|c| c.contains(&requests::service_code_of(t)))
            && statuses
                .as_ref()
                .is_none_or(|s| s.contains(&requests::open_or_closed(t.status)))
    })
    .await?;
    Ok(doc(tickets))
}

async fn list_updates(state: &Open311State, p: &Params) -> Result<Doc, Failure> {
    let (start, end) = window(p, state.clock.now())?;
    // Updates are derived from tickets, found by receipt time: follow-ups on tickets received
    // more than 90 days before start_date are not looked for.
    let tickets = scan(
        state,
        start - Duration::days(MAX_RANGE_DAYS),
        end,
        usize::MAX,
        |_| true,
    )
    .await?;
    let catalog = state.catalog();
    let mut updates: Vec<requests::Update> = tickets
        .iter()
        .flat_map(|t| requests::updates_of(t, &catalog))
        .filter(|u| u.updated_datetime >= start && u.updated_datetime <= end)
        .collect();
    updates.sort_by_key(|u| std::cmp::Reverse(u.updated_datetime));
    updates.truncate(MAX_LISTED);
    Ok(Doc::new(
        "service_requests_updates",
        Node::list(
            "request_update",
            updates.iter().map(requests::Update::node).collect(),
        ),
    ))
}
