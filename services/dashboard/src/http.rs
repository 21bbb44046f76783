//! The dashboard over HTTP: the page and its assets (no external resources: it works offline),
//! the figures as JSON, every table as CSV, and a server-sent event stream that tells open
//! pages to re-read.
//!
//! | method and path                          | what                                             |
//! |------------------------------------------|--------------------------------------------------|
//! | `GET /dashboard`                         | the page (Chinese; English switch)               |
//! | `GET /dashboard/wall`                    | the 大屏 layout for the command-centre wall         |
//! | `GET /dashboard/signin`                  | sign-in: paste a token                           |
//! | `GET /dashboard/assets/{file}`           | scripts, styles, icon                            |
//! | `GET /api/v1/dashboard/overview`         | every figure for the filters (JSON)              |
//! | `GET /api/v1/dashboard/hotspots`         | hotspots alone (JSON)                            |
//! | `GET /api/v1/dashboard/export/{t}.csv`   | one table as CSV (`lang=en` for English headers) |
//! | `GET /api/v1/dashboard/whoami`           | the caller's subject and role                    |
//! | `GET /api/v1/dashboard/stream`           | `text/event-stream`: `changed` on every update   |
//!
//! The pages themselves hold no data and are served to anyone; every `/api/` route needs a
//! supervisor or admin token, as `Authorization: Bearer <token>` or `?token=<token>` (wall
//! screens, scripts and `EventSource`, which cannot send headers). Failures are JSON:
//! `{"error":{"code":…,"message":…,"fields":[…]}}` with 400, 401, 403 or 404.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use futures::Stream;
use serde_json::json;
use tokio::sync::watch;

use crate::dashboard::Dashboard;
use crate::error::ApiError;
use crate::export::Lang;
use crate::filter::{FieldError, Filter, RawFilter};
use crate::hotspots::HotspotQuery;

/// How long the stream waits after a change before announcing it, so a burst of events
/// becomes one re-read.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Clone)]
struct Http {
    dashboard: Dashboard,
    /// Open streams end when the process stops, so graceful shutdown does not wait on them.
    shutdown: watch::Receiver<bool>,
}

/// The routes above, to merge into the process's HTTP server.
pub fn router(dashboard: Dashboard, shutdown: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/dashboard", get(|| async { page(INDEX_HTML) }))
        .route("/dashboard/", get(to_dashboard))
        .route("/dashboard/wall", get(|| async { page(WALL_HTML) }))
        .route("/dashboard/signin", get(|| async { page(SIGNIN_HTML) }))
        .route("/dashboard/assets/{file}", get(asset))
        .route("/api/v1/dashboard/overview", get(overview))
        .route("/api/v1/dashboard/hotspots", get(hotspots))
        .route("/api/v1/dashboard/export/{file}", get(export))
        .route("/api/v1/dashboard/whoami", get(whoami))
        .route("/api/v1/dashboard/stream", get(stream))
        .route("/api/v1/dashboard/{*rest}", any(unknown))
        .with_state(Http {
            dashboard,
            shutdown,
        })
}

type Pairs = Vec<(String, String)>;

/// The query pairs, or a JSON 400 for a malformed query string.
fn pairs(q: Result<Query<Pairs>, QueryRejection>) -> Result<Pairs, ApiError> {
    q.map(|Query(p)| p).map_err(|e| {
        ApiError::Invalid(vec![FieldError {
            field: "query".into(),
            description: e.body_text(),
        }])
    })
}

fn get_param<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The caller's claims, from the `Authorization` header or `?token=`.
fn authorize(s: &Http, headers: &HeaderMap, pairs: &Pairs) -> Result<(), ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    s.dashboard
        .authorize(header.or_else(|| get_param(pairs, "token")))?;
    Ok(())
}

fn parse_all(s: &Http, pairs: &Pairs) -> Result<(Filter, HotspotQuery), ApiError> {
    let kv = || pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    s.dashboard.parse(&RawFilter::from_pairs(kv()), kv())
}

fn json_no_store(body: impl serde::Serialize) -> Response {
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn overview(
    State(s): State<Http>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pairs(q)?;
    authorize(&s, &headers, &pairs)?;
    let (filter, hq) = parse_all(&s, &pairs)?;
    Ok(json_no_store(s.dashboard.overview(&filter, &hq)))
}

async fn hotspots(
    State(s): State<Http>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pairs(q)?;
    authorize(&s, &headers, &pairs)?;
    let (filter, hq) = parse_all(&s, &pairs)?;
    let spots = s.dashboard.hotspots(&filter, &hq);
    Ok(json_no_store(
        json!({"query": hq, "filter": filter, "hotspots": spots}),
    ))
}

async fn export(
    State(s): State<Http>,
    Path(file): Path<String>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pairs(q)?;
    authorize(&s, &headers, &pairs)?;
    let name = file.strip_suffix(".csv").unwrap_or(&file);
    let (filter, hq) = parse_all(&s, &pairs)?;
    let lang = Lang::parse(get_param(&pairs, "lang").unwrap_or(""));
    let (filename, csv) = s.dashboard.export(name, &filter, &hq, lang)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        csv,
    )
        .into_response())
}

async fn whoami(
    State(s): State<Http>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pairs = pairs(q)?;
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = s
        .dashboard
        .authorize(header.or_else(|| get_param(&pairs, "token")))?;
    Ok(json_no_store(json!({
        "sub": claims.sub,
        "role": claims.role,
        "expires_at": chrono::DateTime::from_timestamp(claims.exp, 0),
    })))
}

/// `changed` with the model version after every update (debounced), `hello` on connect.
async fn stream(
    State(s): State<Http>,
    headers: HeaderMap,
    q: Result<Query<Pairs>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let pairs = pairs(q)?;
    authorize(&s, &headers, &pairs)?;
    let changes = s.dashboard.changes();
    let hello = Some(*changes.borrow());
    let events = futures::stream::unfold(
        (changes, s.shutdown.clone(), hello),
        |(mut changes, mut shutdown, hello)| async move {
            if let Some(version) = hello {
                let e = Event::default()
                    .event("hello")
                    .data(json!({"version": version}).to_string());
                return Some((Ok(e), (changes, shutdown, None)));
            }
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                r = changes.changed() => r.ok()?,
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            tokio::time::sleep(DEBOUNCE).await;
            let version = *changes.borrow_and_update();
            let e = Event::default()
                .event("changed")
                .data(json!({"version": version}).to_string());
            Some((Ok(e), (changes, shutdown, None)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn unknown() -> ApiError {
    ApiError::NotFound("no such dashboard API; see /api/v1/dashboard/overview".into())
}

async fn to_dashboard(q: axum::extract::RawQuery) -> Redirect {
    match q.0 {
        Some(q) if !q.is_empty() => Redirect::permanent(&format!("/dashboard?{q}")),
        _ => Redirect::permanent("/dashboard"),
    }
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const WALL_HTML: &str = include_str!("../assets/wall.html");
const SIGNIN_HTML: &str = include_str!("../assets/signin.html");

/// Only our own scripts, styles and data: nothing is fetched from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            // A `?token=` in the address must not travel to other sites.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// `(file, content type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/common.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "wall.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/wall.js"),
    ),
    (
        "signin.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/signin.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
