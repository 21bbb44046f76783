//! The supervisor dashboard, black box: a seeded scenario whose figures are computed here by
//! hand (see each expected value's comment), role checks, personal data never shown, and live
//! updates over the event stream within 2 s.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use minyi::app::{Mode, Service};
use minyi::config::Config;
use minyi_catalog::model::Responsibility;
use minyi_core::auth::Role;
use minyi_core::event::{new_event, routing_proto};
use minyi_core::petition::{Channel, TicketStatus};
use minyi_core::store::{
    AuditRecord, DispatchRecord, PostgresStore, RoutingRecord, TicketRecord, TicketStore,
    TicketUpdate, Transition, TransitionOutcome,
};
use minyi_proto::events::event::Body;
use minyi_proto::events::{DispatchChanged, TicketReceived, TicketRouted};
use minyi_proto::supervisor as pb;
use minyi_proto::supervisor::supervisor_service_client::SupervisorServiceClient;
use serde_json::{Value, json};
use support::{Backend, Bearer, production_config, small_catalog, spawn_services, spawn_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as GrpcChannel;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.0 client: the server answers with a close-delimited body, never chunked.

async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}

async fn get_json(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, _, body) = http_get(addr, path, token).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

/// An open `text/event-stream` connection.
struct EventStream {
    socket: tokio::net::TcpStream,
    /// Read and not yet matched by `wait_for`.
    seen: String,
    /// Everything read.
    log: String,
}

impl EventStream {
    async fn open(addr: std::net::SocketAddr, token: &str) -> EventStream {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET /api/v1/dashboard/stream?token={token} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        socket.write_all(req.as_bytes()).await.unwrap();
        let mut s = EventStream {
            socket,
            seen: String::new(),
            log: String::new(),
        };
        let mut head = String::new();
        let mut buf = [0u8; 4096];
        while !head.contains("event: hello") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.socket.read(&mut buf))
                .await
                .expect("no `hello` within 5 s")
                .unwrap();
            assert!(n > 0, "stream closed: {head}");
            head.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(head.contains("text/event-stream"), "{head}");
        s.seen = head
            .split_once("event: hello")
            .map(|x| x.1.to_owned())
            .unwrap_or_default();
        s.log = head;
        s
    }

    /// Reads until `needle` appears after what was consumed so far; false on timeout.
    async fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = self.seen.find(needle) {
                self.seen.drain(..i + needle.len());
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    self.seen.push_str(&text);
                    self.log.push_str(&text);
                }
                _ => return false,
            }
        }
    }
}

/// Retries `check` until it reports no mismatch, for at most `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let problems = check().await;
        if problems.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard never showed the expected figures:\n  {}",
            problems.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Adds a mismatch to `out` unless `got` is within 1e-9 of `want`.
fn expect_f(out: &mut Vec<String>, what: &str, got: &Value, want: f64) {
    match num(got) {
        Some(g) if (g - want).abs() < 1e-9 => {}
        _ => out.push(format!("{what}: got {got}, want {want}")),
    }
}

fn expect_eq(out: &mut Vec<String>, what: &str, got: &Value, want: Value) {
    if *got != want {
        out.push(format!("{what}: got {got}, want {want}"));
    }
}

type Supervisor = SupervisorServiceClient<InterceptedService<GrpcChannel, Bearer>>;

/// A SupervisorService client with `token` (or none).
async fn supervisor_client(app: &support::TestApp, token: Option<&str>) -> Supervisor {
    let channel = GrpcChannel::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let header = token.map(|t| format!("Bearer {t}").parse().unwrap());
    SupervisorServiceClient::with_interceptor(channel, Bearer(header))
}

fn march_filter() -> pb::Filter {
    pb::Filter {
        from: "2026-03-02".into(),
        to: "2026-03-08".into(),
        ..pb::Filter::default()
    }
}

// ---------------------------------------------------------------------------------------
// Seeding tickets straight into the store, with their events, at chosen times.

/// Beijing time in 2026.
fn bj(month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, month, day, hour, minute, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn ts(t: DateTime<Utc>) -> Value {
    json!(t.to_rfc3339())
}

struct Place {
    street: String,
    community: String,
}

impl Place {
    fn new(street: &str, community: &str) -> Place {
        Place {
            street: street.into(),
            community: community.into(),
        }
    }
}

static DONGZHOU: std::sync::LazyLock<Place> =
    std::sync::LazyLock::new(|| Place::new("ST-GM", "CM-GM-DONGZHOU"));
static SHANGCUN: std::sync::LazyLock<Place> =
    std::sync::LazyLock::new(|| Place::new("ST-GOM", "CM-GOM-SHANGCUN"));

/// One catalog item of the scenario and its owner.
#[derive(Clone)]
struct Item {
    code: String,
    name: String,
    category: String,
    unit: String,
}

fn items() -> (Item, Item) {
    let catalog = minyi_catalog::demo_slice();
    let f = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Functional { .. }))
        .unwrap();
    let Responsibility::Functional { unit } = &f.responsibility else {
        unreachable!()
    };
    let t = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Territorial) && i.path[0] != f.path[0])
        .unwrap();
    (
        Item {
            code: f.code.clone(),
            name: f.name.clone(),
            category: f.path[0].clone(),
            unit: unit.clone(),
        },
        Item {
            code: t.code.clone(),
            name: t.name.clone(),
            category: t.path[0].clone(),
            unit: String::new(),
        },
    )
}

struct Seeder {
    store: Arc<dyn TicketStore>,
    /// Write each change's event to the outbox, as the services do. History for a data
    /// directory that a whole cluster will open has none: its services would act on them.
    events: bool,
}

/// What happens to a seeded ticket.
struct Spec<'a> {
    received: DateTime<Utc>,
    text: &'a str,
    item: &'a Item,
    place: &'a Place,
    /// `auto` or `needs_dispatcher`; the status when there is no handling.
    decision: &'a str,
    status: TicketStatus,
    duplicate_of: Option<Uuid>,
    /// Audit actions with their times (`dispatched`, `returned`, `escalated`, `arbitrated`…),
    /// then the final handling record.
    steps: Vec<(&'a str, DateTime<Utc>)>,
    handling: Option<Value>,
}

impl Seeder {
    async fn seed(&self, s: Spec<'_>) -> TicketRecord {
        let id = Uuid::now_v7();
        let received = new_event(
            id,
            s.received,
            Body::Received(TicketReceived {
                tracking_number: String::new(),
                text: s.text.into(),
                ..TicketReceived::default()
            }),
        );
        self.store
            .create_ticket(
                TicketRecord {
                    id,
                    tracking_number: String::new(),
                    status: TicketStatus::Received,
                    channel: Channel::Hotline,
                    title: String::new(),
                    text: s.text.into(),
                    anonymous: false,
                    caller_name: Some("k1:sealed-name".into()),
                    caller_phone: Some("k1:sealed-phone".into()),
                    caller_id_number: None,
                    address: "光明区".into(),
                    latitude: None,
                    longitude: None,
                    event_time: None,
                    attachment_urls: vec![],
                    idempotency_key: None,
                    received_at: s.received,
                    received_by: "agent-1".into(),
                    follow_ups: vec![],
                    routing: None,
                    dispatch: None,
                    version: 0,
                },
                self.events.then_some(received).into_iter().collect(),
            )
            .await
            .unwrap();
        let routing = RoutingRecord {
            decision: s.decision.into(),
            item_code: s.item.code.clone(),
            item_name: s.item.name.clone(),
            lead_unit: s.item.unit.clone(),
            street: s.place.street.clone(),
            community: s.place.community.clone(),
            duplicate_of: s.duplicate_of.map(|d| d.to_string()).unwrap_or_default(),
            routed_at: Some(s.received),
            accept_hours: 4,
            complete_days: 5,
            ..RoutingRecord::default()
        };
        let routed = new_event(
            id,
            s.received,
            Body::Routed(TicketRouted {
                routing: Some(routing_proto(&routing)),
            }),
        );
        let status = if s.handling.is_some() {
            TicketStatus::Routed
        } else {
            s.status
        };
        self.store
            .apply_effect(
                "seed",
                Uuid::now_v7(),
                id,
                TicketUpdate {
                    status: Some(status),
                    routing: Some(routing),
                },
                self.events.then_some(routed).into_iter().collect(),
            )
            .await
            .unwrap();
        if let Some(h) = s.handling {
            let record: DispatchRecord = serde_json::from_value(h).unwrap();
            for (action, at) in &s.steps {
                let current = self.store.get_ticket(&id.to_string()).await.unwrap();
                let body = Body::DispatchChanged(DispatchChanged {
                    action: (*action).into(),
                    lead_unit: record.lead_unit.clone(),
                    ..DispatchChanged::default()
                });
                let outcome = self
                    .store
                    .transition(Transition {
                        ticket_id: id,
                        expected_version: current.version,
                        status: record.state.ticket_status(),
                        dispatch: record.clone(),
                        routing: None,
                        audit: AuditRecord {
                            ticket_id: id,
                            at: *at,
                            actor: "seed".into(),
                            role: "dispatcher".into(),
                            unit: String::new(),
                            action: (*action).into(),
                            from_state: String::new(),
                            to_state: record.state.as_str().into(),
                            reason: String::new(),
                            allowed: true,
                        },
                        inbox: vec![],
                        events: self
                            .events
                            .then(|| new_event(id, *at, body))
                            .into_iter()
                            .collect(),
                        dedupe: None,
                    })
                    .await
                    .unwrap();
                assert!(matches!(outcome, TransitionOutcome::Applied { .. }));
            }
        }
        self.store.get_ticket(&id.to_string()).await.unwrap()
    }
}

fn callback(rating: &str, cause: &str, at: DateTime<Utc>) -> Value {
    json!({"rating": rating, "cause": cause, "note": "", "by": "dispatcher-1", "at": ts(at)})
}

fn ret(unit: &str, at: DateTime<Utc>) -> Value {
    json!({"unit": unit, "reason": "不属于本单位职责", "catalog_rule": "X", "at": ts(at)})
}

/// The scenario (week of Monday 2026-03-02; no holidays that month; working hours 09-12 and
/// 14-18, 7 hours a day). `u1` is a department, `ST-GM`, `ST-GOM`, `ST-XH` streets.
///
/// | ticket | received  | what happens |
/// |--------|-----------|--------------|
/// | A | 03-02 09:00 | auto to u1 11:00, accepted 12:00 (by 14:00), completed 03-04 11:00 (by 03-06 18:00), satisfied |
/// | B | 03-02 10:00 | auto to u1 10:30, accepted 03-03 09:30 (by 03-02 17:00: late), extension refused, completed 03-09 10:30 (by 03-06 18:00: late), dissatisfied (citizen) |
/// | C | 03-03 09:00 | to u1 09:30, returned 10:00, manual to ST-GM 14:00, accepted 15:00 (by 17:00), open, due 03-05 18:00 (overdue) |
/// | D | 03-04 09:00 | needs a dispatcher |
/// | E | 03-04 10:00 | linked duplicate of A |
/// | F | 03-05 09:00 | SHANGCUN, to ST-GOM 09:15, never accepted (by 12:00), due 03-12 18:00 (overdue) |
/// | G | 03-06 09:00 | to u1 11:00, accepted 11:30 (by 14:00), completed 16:00 (by 03-10), basically satisfied, archived |
/// | I | 03-07 10:00 | to u1 10:30, returned 11:00, to ST-GM 11:30, returned 12:00: escalated to arbitration (accept_by 03-09 12:00) |
/// | J | 03-08 09:00 | to u1 09:30, returned by u1 10:00, by ST-XH 11:00, ruled 15:00: ST-GM, accepted 03-09 09:30 (by 10:00), completed 03-19 10:00 (by 03-20 18:00) |
/// | K, L | 03-06 10:00, 03-07 10:00 | SHANGCUN, routed, texts like F's |
/// | H | 03-09 09:00 | after the range |
struct Scenario {
    u1: String,
    f_item: Item,
    t_item: Item,
    a: TicketRecord,
    all: Vec<TicketRecord>,
}

const PHONE_IN_TEXT: &str = "13912345678";

async fn seed_first_half(seeder: &Seeder, f_item: &Item, t_item: &Item) -> Vec<TicketRecord> {
    let u1 = f_item.unit.as_str();
    let mut out = Vec::new();
    let a = seeder
        .seed(Spec {
            received: bj(3, 2, 9, 0),
            text: "东周社区华夏路烧烤店晚上油烟很大噪音扰民",
            item: f_item,
            place: &DONGZHOU,
            decision: "auto",
            status: TicketStatus::Completed,
            duplicate_of: None,
            steps: vec![
                ("dispatched", bj(3, 2, 11, 0)),
                ("accepted", bj(3, 2, 12, 0)),
            ],
            handling: Some(json!({
                "state": "called_back", "lead_unit": u1, "dispatched_at": ts(bj(3, 2, 11, 0)),
                "accept_by": ts(bj(3, 2, 14, 0)), "complete_by": ts(bj(3, 6, 18, 0)),
                "accepted_at": ts(bj(3, 2, 12, 0)), "completed_at": ts(bj(3, 4, 11, 0)),
                "callback": callback("satisfied", "", bj(3, 5, 10, 0)),
            })),
        })
        .await;
    out.push(a.clone());
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 2, 10, 0),
                text: &format!("公司拖欠工资两个月老板联系不上，请回电{PHONE_IN_TEXT}"),
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::Completed,
                duplicate_of: None,
                steps: vec![("dispatched", bj(3, 2, 10, 30))],
                handling: Some(json!({
                    "state": "called_back", "lead_unit": u1, "dispatched_at": ts(bj(3, 2, 10, 30)),
                    "accept_by": ts(bj(3, 2, 17, 0)), "complete_by": ts(bj(3, 6, 18, 0)),
                    "accepted_at": ts(bj(3, 3, 9, 30)), "completed_at": ts(bj(3, 9, 10, 30)),
                    "extensions": [{"working_days": 3, "reason": "需协调", "requested_by": "h",
                                    "requested_at": ts(bj(3, 4, 9, 0)), "approved": false}],
                    "callback": callback("dissatisfied", "citizen", bj(3, 10, 10, 0)),
                })),
            })
            .await,
    );
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 3, 9, 0),
                text: "小区地下车库漏水严重墙面发霉",
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::Accepted,
                duplicate_of: None,
                steps: vec![
                    ("dispatched", bj(3, 3, 9, 30)),
                    ("returned", bj(3, 3, 10, 0)),
                    ("dispatched", bj(3, 3, 14, 0)),
                    ("accepted", bj(3, 3, 15, 0)),
                ],
                handling: Some(json!({
                    "state": "accepted", "lead_unit": "ST-GM", "manual": true,
                    "dispatched_at": ts(bj(3, 3, 14, 0)),
                    "accept_by": ts(bj(3, 3, 17, 0)), "complete_by": ts(bj(3, 5, 18, 0)),
                    "accepted_at": ts(bj(3, 3, 15, 0)),
                    "returns": [ret(u1, bj(3, 3, 10, 0))],
                })),
            })
            .await,
    );
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 4, 9, 0),
                text: "咨询孩子入学积分怎么计算",
                item: t_item,
                place: &DONGZHOU,
                decision: "needs_dispatcher",
                status: TicketStatus::NeedsDispatcher,
                duplicate_of: None,
                steps: vec![],
                handling: None,
            })
            .await,
    );
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 4, 10, 0),
                text: "华夏路那家烧烤店晚上油烟还是很大",
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::LinkedDuplicate,
                duplicate_of: Some(a.id),
                steps: vec![],
                handling: None,
            })
            .await,
    );
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 5, 9, 0),
                text: "上村社区公园路路灯坏了晚上一片漆黑",
                item: t_item,
                place: &SHANGCUN,
                decision: "auto",
                status: TicketStatus::Dispatched,
                duplicate_of: None,
                steps: vec![("dispatched", bj(3, 5, 9, 15))],
                handling: Some(json!({
                    "state": "dispatched", "lead_unit": "ST-GOM",
                    "dispatched_at": ts(bj(3, 5, 9, 15)),
                    "accept_by": ts(bj(3, 5, 12, 0)), "complete_by": ts(bj(3, 12, 18, 0)),
                })),
            })
            .await,
    );
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 6, 9, 0),
                text: "马路中间井盖松动车辆经过哐哐响",
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::Archived,
                duplicate_of: None,
                steps: vec![("dispatched", bj(3, 6, 11, 0))],
                handling: Some(json!({
                    "state": "archived", "lead_unit": u1, "dispatched_at": ts(bj(3, 6, 11, 0)),
                    "accept_by": ts(bj(3, 6, 14, 0)), "complete_by": ts(bj(3, 10, 18, 0)),
                    "accepted_at": ts(bj(3, 6, 11, 30)), "completed_at": ts(bj(3, 6, 16, 0)),
                    "callback": callback("basically_satisfied", "", bj(3, 7, 10, 0)),
                })),
            })
            .await,
    );
    out
}

async fn seed_second_half(seeder: &Seeder, f_item: &Item, t_item: &Item) -> Vec<TicketRecord> {
    let u1 = f_item.unit.as_str();
    let mut out = Vec::new();
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 7, 10, 0),
                text: "楼顶违章搭建铁皮房存在安全隐患",
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::InArbitration,
                duplicate_of: None,
                steps: vec![
                    ("dispatched", bj(3, 7, 10, 30)),
                    ("returned", bj(3, 7, 11, 0)),
                    ("dispatched", bj(3, 7, 11, 30)),
                    ("escalated", bj(3, 7, 12, 0)),
                ],
                handling: Some(json!({
                    "state": "arbitration", "lead_unit": "ST-GM", "manual": true,
                    "dispatched_at": ts(bj(3, 7, 11, 30)), "accept_by": ts(bj(3, 9, 12, 0)),
                    "returns": [ret(u1, bj(3, 7, 11, 0)), ret("ST-GM", bj(3, 7, 12, 0))],
                    "arbitration": {"reason": "returned 2 times", "escalated_at": ts(bj(3, 7, 12, 0)),
                                    "candidates": [u1, "ST-GM"]},
                })),
            })
            .await,
    );
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 8, 9, 0),
                text: "河道里有人倾倒建筑垃圾",
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::Completed,
                duplicate_of: None,
                steps: vec![
                    ("dispatched", bj(3, 8, 9, 30)),
                    ("returned", bj(3, 8, 10, 0)),
                    ("dispatched", bj(3, 8, 10, 30)),
                    ("returned", bj(3, 8, 11, 0)),
                    ("escalated", bj(3, 8, 11, 0)),
                    ("arbitrated", bj(3, 8, 15, 0)),
                ],
                handling: Some(json!({
                    "state": "completed", "lead_unit": "ST-GM", "manual": true,
                    "dispatched_at": ts(bj(3, 8, 15, 0)),
                    "accept_by": ts(bj(3, 9, 10, 0)), "complete_by": ts(bj(3, 20, 18, 0)),
                    "accepted_at": ts(bj(3, 9, 9, 30)), "completed_at": ts(bj(3, 19, 10, 0)),
                    "returns": [ret(u1, bj(3, 8, 10, 0)), ret("ST-XH", bj(3, 8, 11, 0))],
                    "arbitration": {"reason": "returned 2 times", "escalated_at": ts(bj(3, 8, 11, 0)),
                                    "candidates": [u1, "ST-XH"], "ruling": "属地街道先办后议",
                                    "decided_by": "arb-1", "decided_at": ts(bj(3, 8, 15, 0)),
                                    "catalog_version": "v2"},
                })),
            })
            .await,
    );
    for (day, text) in [
        (6, "上村社区公园路的路灯坏了晚上一片漆黑"),
        (7, "上村社区公园路路灯坏了好几天晚上一片漆黑"),
    ] {
        out.push(
            seeder
                .seed(Spec {
                    received: bj(3, day, 10, 0),
                    text,
                    item: t_item,
                    place: &SHANGCUN,
                    decision: "auto",
                    status: TicketStatus::Routed,
                    duplicate_of: None,
                    steps: vec![],
                    handling: None,
                })
                .await,
        );
    }
    out.push(
        seeder
            .seed(Spec {
                received: bj(3, 9, 9, 0),
                text: "范围之外的诉求",
                item: f_item,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::Routed,
                duplicate_of: None,
                steps: vec![],
                handling: None,
            })
            .await,
    );
    out
}

/// Open tickets relative to now: one at risk (a month of its time used, 2 hours left), one
/// overdue, one just received.
async fn seed_now(seeder: &Seeder, f_item: &Item) -> Vec<TicketRecord> {
    let now = Utc::now();
    let u1 = f_item.unit.as_str();
    let at_risk = seeder
        .seed(Spec {
            received: now - chrono::Duration::days(40),
            text: "临期：小区电梯经常困人",
            item: f_item,
            place: &DONGZHOU,
            decision: "auto",
            status: TicketStatus::Accepted,
            duplicate_of: None,
            steps: vec![("dispatched", now - chrono::Duration::days(40))],
            handling: Some(json!({
                "state": "accepted", "lead_unit": u1,
                "dispatched_at": ts(now - chrono::Duration::days(40)),
                "accepted_at": ts(now - chrono::Duration::days(39)),
                "complete_by": ts(now + chrono::Duration::hours(2)),
            })),
        })
        .await;
    let overdue = seeder
        .seed(Spec {
            received: now - chrono::Duration::days(10),
            text: "超期：菜市场占道经营",
            item: f_item,
            place: &DONGZHOU,
            decision: "auto",
            status: TicketStatus::Accepted,
            duplicate_of: None,
            steps: vec![("dispatched", now - chrono::Duration::days(10))],
            handling: Some(json!({
                "state": "accepted", "lead_unit": u1,
                "dispatched_at": ts(now - chrono::Duration::days(10)),
                "accepted_at": ts(now - chrono::Duration::days(9)),
                "complete_by": ts(now - chrono::Duration::hours(1)),
            })),
        })
        .await;
    let fresh = seeder
        .seed(Spec {
            received: now - chrono::Duration::minutes(1),
            text: "刚刚受理的诉求",
            item: f_item,
            place: &DONGZHOU,
            decision: "auto",
            status: TicketStatus::Received,
            duplicate_of: None,
            steps: vec![],
            handling: None,
        })
        .await;
    vec![at_risk, overdue, fresh]
}

/// Everything the scenario's figures should be, for `from=2026-03-02&to=2026-03-08`.
fn check_range(o: &Value, s: &Scenario) -> Vec<String> {
    let mut p = Vec::new();
    let f = &o["figures"];
    if o["ready"] != json!(true) {
        p.push("not ready".into());
    }
    // A B C D E F G I J K L (H is on 03-09).
    expect_eq(&mut p, "received", &f["received"], json!(11));
    // A B C F G I J.
    expect_eq(&mut p, "dispatched", &f["dispatched"], json!(7));
    // A B G J.
    expect_eq(&mut p, "completed", &f["completed"], json!(4));
    // C (accepted), F (dispatched); I waits for an arbitrator.
    expect_eq(&mut p, "open", &f["open"], json!(2));
    expect_eq(&mut p, "overdue", &f["overdue"], json!(2));
    expect_eq(
        &mut p,
        "linked_duplicates",
        &f["linked_duplicates"],
        json!(1),
    );
    expect_eq(&mut p, "waiting", &f["waiting_for_dispatcher"], json!(1));
    // First dispatch stood for A B F G; C I J were returned.
    expect_eq(
        &mut p,
        "accuracy n/d",
        &json!([
            f["first_dispatch_accuracy"]["numerator"],
            f["first_dispatch_accuracy"]["denominator"]
        ]),
        json!([4, 7]),
    );
    expect_f(
        &mut p,
        "accuracy",
        &f["first_dispatch_accuracy"]["value"],
        4.0 / 7.0,
    );
    // Receipt → first dispatch: A 2, B 0.5, C 0.5, F 0.25, G 2, I 0.5, J 0.5 hours.
    expect_f(
        &mut p,
        "avg dispatch hours",
        &f["avg_dispatch_hours"]["value"],
        6.25 / 7.0,
    );
    // Receipt → accepted: A 3, B 23.5, C 6, G 2.5, J 24.5 hours.
    expect_f(
        &mut p,
        "avg accept hours",
        &f["avg_accept_hours"]["value"],
        59.5 / 5.0,
    );
    // Completed on time A G J of completed A B G J plus overdue open C F.
    expect_f(
        &mut p,
        "on time",
        &f["on_time_completion"]["value"],
        3.0 / 6.0,
    );
    // First dispatch → completion in working days: A 2 (Mon 11:00 → Wed 11:00), B 5
    // (Mon 10:30 → next Mon 10:30), G 3/7 (11-12, 14-16), J 57/7 (Sun 09:30 → Thu 03-19
    // 10:00: 8 full days and 1 hour).
    expect_f(
        &mut p,
        "avg completion days",
        &f["avg_completion_working_days"]["value"],
        (2.0 + 5.0 + 3.0 / 7.0 + 57.0 / 7.0) / 4.0,
    );
    // Acceptance settled for A B C F G I J; within the limit for A C G J.
    expect_f(&mut p, "response", &f["response_rate"]["value"], 4.0 / 7.0);
    expect_f(
        &mut p,
        "resolution",
        &f["resolution_rate"]["value"],
        4.0 / 7.0,
    );
    // Rated A (satisfied), B (dissatisfied), G (basically satisfied).
    expect_f(
        &mut p,
        "satisfaction",
        &f["satisfaction_rate"]["value"],
        2.0 / 3.0,
    );

    // Arbitration: I waits; J was ruled in the range.
    let queue: Vec<&Value> = o["arbitration"]["queue"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let i_id = s.all[7].id.to_string();
    let j_id = s.all[8].id.to_string();
    expect_eq(
        &mut p,
        "arbitration queue",
        &json!(queue.iter().map(|r| r["id"].clone()).collect::<Vec<_>>()),
        json!([i_id]),
    );
    let outcomes = o["arbitration"]["outcomes"].as_array().unwrap();
    expect_eq(&mut p, "outcomes", &json!(outcomes.len()), json!(1));
    if let Some(out) = outcomes.first() {
        expect_eq(&mut p, "outcome id", &out["id"], json!(j_id));
        expect_eq(&mut p, "outcome owner", &out["owner_unit"], json!("ST-GM"));
        expect_eq(
            &mut p,
            "outcome ruling",
            &out["ruling"],
            json!("属地街道先办后议"),
        );
    }

    // League: u1 led A B G, returned C I J, late B, extension B, dissatisfied B = 6;
    // ST-GM led C J, returned I, late C = 2; ST-GOM led F, late F = 1; ST-XH returned J = 1.
    let league: Vec<Value> = o["league"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!([
                r["unit"],
                r["led"],
                r["returns"],
                r["late"],
                r["extensions"],
                r["dissatisfied"],
                r["problems"]
            ])
        })
        .collect();
    expect_eq(
        &mut p,
        "league",
        &json!(league),
        json!([
            [s.u1, 3, 3, 1, 1, 1, 6],
            ["ST-GM", 2, 1, 1, 0, 0, 2],
            ["ST-GOM", 1, 0, 1, 0, 0, 1],
            ["ST-XH", 0, 1, 0, 0, 0, 1],
        ]),
    );
    // Breakdowns: SHANGCUN has F K L, the rest is in DONGZHOU.
    let streets: Vec<Value> = o["breakdowns"]["street"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["key"], r["received"], r["dispatched"]]))
        .collect();
    expect_eq(
        &mut p,
        "by street",
        &json!(streets),
        json!([["ST-GM", 8, 6], ["ST-GOM", 3, 1]]),
    );
    let cats: Vec<Value> = o["breakdowns"]["category"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["key"], r["received"]]))
        .collect();
    // F K L D are of the territorial item's category.
    expect_eq(
        &mut p,
        "by category",
        &json!(cats),
        json!([[s.f_item.category, 7], [s.t_item.category, 4]]),
    );
    // Trend: the 30 days ending 03-08.
    let trend = o["trend"].as_array().unwrap();
    expect_eq(&mut p, "trend days", &json!(trend.len()), json!(30));
    let day = |d: &str| {
        trend
            .iter()
            .find(|t| t["date"] == json!(d))
            .cloned()
            .unwrap_or_default()
    };
    expect_eq(
        &mut p,
        "trend 03-02",
        &json!([
            day("2026-03-02")["received"],
            day("2026-03-02")["dispatched"]
        ]),
        json!([2, 2]),
    );
    expect_eq(
        &mut p,
        "trend 03-04 received",
        &day("2026-03-04")["received"],
        json!(2),
    );
    expect_eq(
        &mut p,
        "trend 03-04 completed",
        &day("2026-03-04")["completed"],
        json!(1),
    );
    expect_eq(
        &mut p,
        "trend 03-06 completed",
        &day("2026-03-06")["completed"],
        json!(1),
    );
    expect_eq(
        &mut p,
        "trend 03-06 received",
        &day("2026-03-06")["received"],
        json!(2),
    );
    expect_f(
        &mut p,
        "trend 03-02 accuracy",
        &day("2026-03-02")["first_dispatch_accuracy"],
        1.0,
    );
    // Hotspots: SHANGCUN F K L (similar texts), DONGZHOU A E (linked duplicate).
    let spots: Vec<Value> = o["hotspots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| json!([h["community"], h["size"]]))
        .collect();
    expect_eq(
        &mut p,
        "hotspots",
        &json!(spots),
        json!([["CM-GOM-SHANGCUN", 3], ["CM-GM-DONGZHOU", 2]]),
    );
    if let Some(h) = o["hotspots"].as_array().and_then(|h| h.get(1)) {
        let mut ids: Vec<String> = h["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        let mut want = vec![s.a.id.to_string(), s.all[4].id.to_string()];
        want.sort();
        expect_eq(&mut p, "hotspot tickets", &json!(ids), json!(want));
    }
    p
}

/// Volumes and the now-relative lists, computed from the seeded receipt times.
fn check_now(o: &Value, s: &Scenario, now_tickets: &[TicketRecord]) -> Vec<String> {
    let mut p = Vec::new();
    let bj = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = Utc::now().with_timezone(&bj).date_naive();
    let monday = today - chrono::Duration::days(today.weekday().num_days_from_monday() as i64);
    let dates: Vec<_> = s
        .all
        .iter()
        .chain(now_tickets)
        .map(|t| t.received_at.with_timezone(&bj).date_naive())
        .collect();
    let count = |f: &dyn Fn(&chrono::NaiveDate) -> bool| dates.iter().filter(|d| f(d)).count();
    expect_eq(
        &mut p,
        "today",
        &o["volume"]["today"],
        json!(count(&|d| *d == today)),
    );
    expect_eq(
        &mut p,
        "this week",
        &o["volume"]["this_week"],
        json!(count(&|d| *d >= monday && *d <= today)),
    );
    expect_eq(
        &mut p,
        "this month",
        &o["volume"]["this_month"],
        json!(count(&|d| d.year() == today.year()
            && d.month() == today.month()
            && *d <= today)),
    );
    // Overdue now: C and F of the scenario and the overdue one, by due time.
    let overdue: Vec<Value> = o["overdue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    expect_eq(
        &mut p,
        "overdue list",
        &json!(overdue),
        json!([
            s.all[2].id.to_string(),
            s.all[5].id.to_string(),
            now_tickets[1].id.to_string()
        ]),
    );
    let at_risk: Vec<Value> = o["at_risk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    expect_eq(
        &mut p,
        "at risk",
        &json!(at_risk),
        json!([now_tickets[0].id.to_string()]),
    );
    p
}

/// The seeded scenario's figures, computed by hand, equal the dashboard's JSON; half the
/// tickets are in the store before the dashboard starts (initial load), half arrive as events.
#[tokio::test]
async fn seeded_scenario_figures_match_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    small_catalog(&catalog_dir);
    let config = Config {
        catalog_dir: Some(catalog_dir),
        model_path: Some(dir.path().join("model.bin")),
        ..production_config().await
    };
    let store: Arc<dyn TicketStore> = Arc::new(
        PostgresStore::connect(config.database_url.as_deref().unwrap(), 4)
            .await
            .unwrap(),
    );
    let seeder = Seeder {
        store,
        events: true,
    };
    let (f_item, t_item) = items();
    let mut all = seed_first_half(&seeder, &f_item, &t_item).await;

    let app = spawn_with(
        config,
        Mode::Production(vec![Service::Dashboard]),
        Some(dir),
    )
    .await;
    let token = app.token(Role::Supervisor);
    all.extend(seed_second_half(&seeder, &f_item, &t_item).await);
    let now_tickets = seed_now(&seeder, &f_item).await;
    // The checks index `all` in seeding order: A B C D E F G I J K L H.
    let scenario = Scenario {
        u1: f_item.unit.clone(),
        a: all[0].clone(),
        f_item: f_item.clone(),
        t_item: t_item.clone(),
        all,
    };
    let path = "/api/v1/dashboard/overview?from=2026-03-02&to=2026-03-08";
    eventually(Duration::from_secs(30), || async {
        let (status, o) = get_json(app.http, path, Some(&token)).await;
        if status != 200 {
            return vec![format!("status {status}: {o}")];
        }
        let mut p = check_range(&o, &scenario);
        p.extend(check_now(&o, &scenario, &now_tickets));
        p
    })
    .await;

    // Filters: one street, one category, one unit; bad values are refused field by field.
    let (_, o) = get_json(
        app.http,
        "/api/v1/dashboard/overview?from=2026-03-02&to=2026-03-08&street=ST-GOM",
        Some(&token),
    )
    .await;
    assert_eq!(o["figures"]["received"], json!(3), "{}", o["figures"]);
    assert_eq!(o["figures"]["dispatched"], json!(1));
    let (status, o) = get_json(
        app.http,
        &format!(
            "/api/v1/dashboard/overview?from=2026-03-02&to=2026-03-08&category={}",
            url_encode(&f_item.category)
        ),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["figures"]["received"], json!(7));
    // ST-XH only returned J.
    let (_, o) = get_json(
        app.http,
        "/api/v1/dashboard/overview?from=2026-03-02&to=2026-03-08&unit=ST-XH",
        Some(&token),
    )
    .await;
    assert_eq!(o["figures"]["received"], json!(1));
    assert_eq!(o["figures"]["first_dispatch_accuracy"]["value"], json!(0.0));
    let (status, o) = get_json(
        app.http,
        "/api/v1/dashboard/overview?from=2026-03-09&to=2026-03-01&street=DEP-ZJ&unit=NOPE",
        Some(&token),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(o["error"]["code"], json!("invalid_argument"));
    let fields: Vec<&str> = o["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["from", "street", "unit"]);

    // The texts shown are masked.
    let (_, head, body) = http_get(
        app.http,
        "/api/v1/dashboard/export/hotspots.csv?from=2026-03-02&to=2026-03-08",
        Some(&token),
    )
    .await;
    assert!(head.contains("text/csv"), "{head}");
    assert!(body.starts_with('\u{feff}'));
    assert!(body.contains("社区"), "{body}");

    // CSV of the league table: the same numbers, Chinese headers by default, English on ask.
    let (status, _, csv) = http_get(
        app.http,
        "/api/v1/dashboard/export/league.csv?from=2026-03-02&to=2026-03-08&lang=en",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("rank,unit_code,unit,led,returns,late")
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&first[..2], ["1", scenario.u1.as_str()]);
    assert_eq!(&first[3..9], ["3", "3", "1", "1", "1", "6"]);
    let (status, _, csv) = http_get(
        app.http,
        "/api/v1/dashboard/export/summary.csv?from=2026-03-02&to=2026-03-08",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert!(csv.contains("指标,数值"), "{csv}");
    assert!(csv.contains("first_dispatch_accuracy,0.5714,4,7"), "{csv}");
    let (status, _, _) =
        http_get(app.http, "/api/v1/dashboard/export/nope.csv", Some(&token)).await;
    assert_eq!(status, 404);

    // gRPC: the same figures, the same refusals.
    let mut grpc = supervisor_client(&app, Some(&token)).await;
    let o = grpc
        .get_overview(pb::GetOverviewRequest {
            filter: Some(march_filter()),
            hotspots: None,
        })
        .await
        .unwrap()
        .into_inner();
    let f = o.figures.unwrap();
    assert_eq!((f.received, f.dispatched, f.completed), (11, 7, 4));
    let acc = f.first_dispatch_accuracy.unwrap();
    assert_eq!((acc.numerator, acc.denominator), (4, 7));
    assert!((f.avg_accept_hours.unwrap().value.unwrap() - 59.5 / 5.0).abs() < 1e-9);
    assert!(f.satisfaction_rate.unwrap().value.is_some());
    assert_eq!(o.league[0].unit, scenario.u1);
    assert_eq!(o.league[0].problems, 6);
    assert_eq!(o.arbitration_queue.len(), 1);
    assert_eq!(o.arbitration_outcomes[0].owner_unit, "ST-GM");
    assert_eq!(o.hotspots[0].community, "CM-GOM-SHANGCUN");
    assert_eq!(o.trend.len(), 30);
    let spots = grpc
        .list_hotspots(pb::ListHotspotsRequest {
            filter: Some(march_filter()),
            hotspots: Some(pb::HotspotParams {
                min_size: 3,
                ..pb::HotspotParams::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spots.hotspots.len(), 1);
    assert_eq!(spots.hotspots[0].size, 3);
    let csv = grpc
        .export_table(pb::ExportTableRequest {
            table: "summary".into(),
            filter: Some(march_filter()),
            lang: "en".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(csv.filename.ends_with(".csv"));
    assert!(
        String::from_utf8(csv.csv)
            .unwrap()
            .contains("first_dispatch_accuracy,0.5714,4,7")
    );
    let e = grpc
        .get_overview(pb::GetOverviewRequest {
            filter: Some(pb::Filter {
                street: "DEP-ZJ".into(),
                to: "yesterday".into(),
                ..pb::Filter::default()
            }),
            hotspots: Some(pb::HotspotParams {
                days: 99,
                ..pb::HotspotParams::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&e);
    let fields: Vec<String> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, ["to", "street", "days"]);
    let mut changes = grpc
        .watch_changes(pb::WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(2), changes.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.version > 0);
    for (token, code) in [
        (None, tonic::Code::Unauthenticated),
        (Some(app.token(Role::Agent)), tonic::Code::PermissionDenied),
        (
            Some(app.token(Role::Dispatcher)),
            tonic::Code::PermissionDenied,
        ),
    ] {
        let mut c = supervisor_client(&app, token.as_deref()).await;
        let e = c
            .get_overview(pb::GetOverviewRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), code);
    }
    let mut admin = supervisor_client(&app, Some(&app.token(Role::Admin))).await;
    admin
        .get_overview(pb::GetOverviewRequest::default())
        .await
        .unwrap();
    app.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only supervisors and admins see figures; every refusal is a JSON error, 401 or 403.
#[tokio::test]
async fn only_supervisors_and_admins_see_the_dashboard() {
    let app = spawn_services(Backend::Embedded, &[]).await;
    let path = "/api/v1/dashboard/overview";
    let (status, o) = get_json(app.http, path, None).await;
    assert_eq!(status, 401);
    assert_eq!(o["error"]["code"], json!("unauthenticated"));
    let (status, o) = get_json(app.http, path, Some("not-a-token")).await;
    assert_eq!(status, 401, "{o}");
    let foreign = minyi_core::auth::TokenAuthority::new(b"another-secret-another-secret-xx")
        .issue("x", Role::Admin, None, chrono::Duration::hours(1))
        .unwrap();
    let (status, _) = get_json(app.http, path, Some(&foreign)).await;
    assert_eq!(status, 401);
    for role in [Role::Agent, Role::Dispatcher, Role::Arbitrator] {
        let (status, o) = get_json(app.http, path, Some(&app.token(role))).await;
        assert_eq!(status, 403, "{role}");
        assert_eq!(o["error"]["code"], json!("permission_denied"));
        assert!(
            o["error"]["message"]
                .as_str()
                .unwrap()
                .contains("supervisor")
        );
    }
    let handler = app.token_for(Role::Handler, Some("ST-GM"));
    let (status, _) = get_json(app.http, path, Some(&handler)).await;
    assert_eq!(status, 403);
    for role in [Role::Supervisor, Role::Admin] {
        let (status, o) = get_json(app.http, path, Some(&app.token(role))).await;
        assert_eq!(status, 200, "{role}: {o}");
    }
    // `?token=` serves wall screens and scripts; the stream and exports check it too.
    let sup = app.token(Role::Supervisor);
    let (status, _) = get_json(app.http, &format!("{path}?token={sup}"), None).await;
    assert_eq!(status, 200);
    let agent = app.token(Role::Agent);
    for p in [
        "/api/v1/dashboard/stream".to_owned(),
        "/api/v1/dashboard/export/summary.csv".to_owned(),
        format!("/api/v1/dashboard/hotspots?token={agent}"),
    ] {
        let (status, _, body) = http_get(app.http, &p, None).await;
        assert!(status == 401 || status == 403, "{p}: {status}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["code"].is_string());
    }
    let (status, o) = get_json(app.http, "/api/v1/dashboard/nothing", Some(&sup)).await;
    assert_eq!(status, 404);
    assert_eq!(o["error"]["code"], json!("not_found"));
    // The pages hold no data and load without a token (they ask for one).
    for page in ["/dashboard", "/dashboard/wall", "/dashboard/signin"] {
        let (status, head, body) = http_get(app.http, page, None).await;
        assert_eq!(status, 200, "{page}");
        assert!(head.contains("content-security-policy"), "{head}");
        assert!(body.contains("<html"), "{page}");
    }
    app.stop().await;
}

/// Petitions with known phone and ID numbers, in the caller fields and in the text: neither
/// appears in any dashboard response (JSON, CSV, stream, pages).
#[tokio::test]
async fn personal_data_never_appears_in_dashboard_responses() {
    let app = spawn_services(Backend::Embedded, &[]).await;
    let phones = ["13912345678", "13800138000"];
    let id_number = "11010519491231002X";
    let mut agent = app.intake(Some(Role::Agent)).await;
    let texts = [
        "东周社区华夏路烧烤店晚上油烟很大噪音扰民，电话13912345678",
        "华夏路那家烧烤店晚上油烟很大，噪音扰民！身份证11010519491231002X",
        "东周社区华夏路烧烤店油烟很大噪音扰民，请联系 138 0013 8000",
    ];
    let mut submitted = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let r = agent
            .submit_petition(minyi_proto::intake::SubmitPetitionRequest {
                channel: 1,
                text: (*text).into(),
                location: Some(minyi_proto::common::Location {
                    address: "光明街道东周社区华夏路".into(),
                    point: None,
                }),
                caller: Some(minyi_proto::common::Caller {
                    anonymous: false,
                    name: "王小明".into(),
                    phone: phones[i % 2].into(),
                    id_number: if i == 1 {
                        id_number.into()
                    } else {
                        String::new()
                    },
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        submitted.push(r.ticket.unwrap().id);
    }
    let token = app.token(Role::Admin);
    // Wait until classification has handled them and the dashboard knows.
    eventually(Duration::from_secs(90), || async {
        let (_, o) = get_json(app.http, "/api/v1/dashboard/overview", Some(&token)).await;
        let received = o["figures"]["received"].as_u64().unwrap_or(0);
        let classified = o["breakdowns"]["street"]
            .as_array()
            .map(|s| s.iter().any(|r| r["key"] == json!("ST-GM")))
            .unwrap_or(false);
        if received == 3 && classified {
            vec![]
        } else {
            vec![format!("received {received}, classified {classified}")]
        }
    })
    .await;

    let mut bodies = Vec::new();
    for p in [
        "/api/v1/dashboard/overview".to_owned(),
        "/api/v1/dashboard/overview?lang=en".to_owned(),
        "/api/v1/dashboard/hotspots?threshold=0.05&min_size=2".to_owned(),
        "/api/v1/dashboard/whoami".to_owned(),
    ] {
        let (status, _, body) = http_get(app.http, &p, Some(&token)).await;
        assert_eq!(status, 200, "{p}");
        bodies.push((p, body));
    }
    for table in [
        "summary",
        "volume",
        "overdue",
        "at_risk",
        "arbitration_queue",
        "arbitration_outcomes",
        "league",
        "by_category",
        "by_street",
        "by_unit",
        "trend",
        "hotspots",
    ] {
        let p = format!("/api/v1/dashboard/export/{table}.csv?threshold=0.05");
        let (status, _, body) = http_get(app.http, &p, Some(&token)).await;
        assert_eq!(status, 200, "{p}");
        bodies.push((p, body));
    }
    for page in [
        "/dashboard",
        "/dashboard/wall",
        "/dashboard/signin",
        "/dashboard/assets/app.js",
        "/dashboard/assets/common.js",
    ] {
        let (_, _, body) = http_get(app.http, page, None).await;
        bodies.push((page.to_owned(), body));
    }
    // gRPC answers too.
    let mut grpc = supervisor_client(&app, Some(&token)).await;
    let o = grpc
        .get_overview(pb::GetOverviewRequest {
            filter: None,
            hotspots: Some(pb::HotspotParams {
                threshold: 0.05,
                ..pb::HotspotParams::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    bodies.push(("grpc GetOverview".into(), format!("{o:?}")));
    let csv = grpc
        .export_table(pb::ExportTableRequest {
            table: "hotspots".into(),
            filter: None,
            lang: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    bodies.push((
        "grpc ExportTable".into(),
        String::from_utf8_lossy(&csv.csv).into_owned(),
    ));
    // The stream, with one more change announced.
    let mut stream = EventStream::open(app.http, &token).await;
    let mut dispatcher = app.dispatch(Role::Dispatcher, None).await;
    let _ = dispatcher
        .get_ticket(minyi_proto::dispatch::GetTicketRequest {
            ticket: submitted[0].clone(),
        })
        .await;
    stream.wait_for("data:", Duration::from_secs(1)).await;
    bodies.push(("stream".into(), stream.log.clone()));

    // The read model may still be taking in the submits: the hotspot can show with two of its
    // three tickets first. Ask until both masked texts are in it (10 s), then assert.
    let excerpts = |o: &Value| -> Vec<String> {
        o["hotspots"][0]["tickets"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["excerpt"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut o = Value::Null;
    for _ in 0..100 {
        o = get_json(
            app.http,
            "/api/v1/dashboard/hotspots?threshold=0.05&min_size=2",
            Some(&token),
        )
        .await
        .1;
        let shown = excerpts(&o);
        if shown.iter().any(|t| t.contains("139****5678"))
            && shown.iter().any(|t| t.contains("138 **** 8000"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = excerpts(&o);
    assert!(
        shown.iter().any(|t| t.contains("139****5678")),
        "the texts are shown, masked: {shown:?}"
    );
    assert!(
        shown.iter().any(|t| t.contains("138 **** 8000")),
        "{shown:?}"
    );
    for (path, body) in &bodies {
        for secret in phones
            .iter()
            .chain(&[id_number, "王小明", "1380013", "0013 8000"])
        {
            assert!(!body.contains(secret), "{path} shows {secret}");
        }
    }
    app.stop().await;
}

/// A petition submitted through the API shows on an open page within 2 s.
#[tokio::test]
async fn a_new_petition_reaches_an_open_page_within_two_seconds() {
    let app = spawn_services(Backend::Embedded, &[]).await;
    let token = app.token(Role::Supervisor);
    eventually(Duration::from_secs(10), || async {
        let (_, o) = get_json(app.http, "/api/v1/dashboard/overview", Some(&token)).await;
        if o["ready"] == json!(true) {
            vec![]
        } else {
            vec!["not ready".into()]
        }
    })
    .await;
    let mut stream = EventStream::open(app.http, &token).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    let started = Instant::now();
    agent
        .submit_petition(minyi_proto::intake::SubmitPetitionRequest {
            channel: 1,
            text: "小区门口垃圾堆积三天无人清理".into(),
            location: Some(minyi_proto::common::Location {
                address: "光明街道东周社区".into(),
                point: None,
            }),
            caller: Some(minyi_proto::common::Caller {
                anonymous: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        stream
            .wait_for("event: changed", Duration::from_secs(2))
            .await,
        "no `changed` within 2 s"
    );
    let (_, o) = get_json(app.http, "/api/v1/dashboard/overview", Some(&token)).await;
    assert_eq!(o["volume"]["today"], json!(1), "{}", o["volume"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

/// Not a check: fills the embedded data directory `MINYI_SEED_DIR` with 30 days of plausible
/// history (about 600 petitions on the built-in demo catalog: dispatches, returns, late and
/// on-time completions, callbacks, arbitration, a hotspot), so the screenshot in `docs/` shows
/// a working district. `SCREENSHOT=docs/dashboard.png bash deploy/browser-test.sh` runs it.
#[tokio::test]
#[ignore]
async fn seed_history_for_the_screenshot() {
    let Ok(dir) = std::env::var("MINYI_SEED_DIR") else {
        return;
    };
    let store: Arc<dyn TicketStore> = Arc::new(
        minyi_core::store::SqliteStore::open(&std::path::Path::new(&dir).join("minyi.db"))
            .await
            .unwrap(),
    );
    let seeder = Seeder {
        store,
        events: false,
    };
    let catalog = minyi_catalog::Catalog::demo();
    let history = minyi_catalog::demo_history(&catalog, 1, 7);
    let places: Vec<Place> = minyi_catalog::units::COMMUNITIES
        .iter()
        .map(|(street, suffix, _, _)| {
            Place::new(
                street,
                &minyi_catalog::units::community_code(street, suffix),
            )
        })
        .collect();
    // A small deterministic generator: the same history every time.
    let mut state: u64 = 0x2026_1126;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let now = Utc::now();
    let hours = |h: f64| chrono::Duration::seconds((h * 3600.0) as i64);
    let bj = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = now.with_timezone(&bj).date_naive();
    for _ in 0..600 {
        // More petitions in recent days, none in the future.
        let day_back = (next(30) * next(30)) / 30;
        let date = today - chrono::Duration::days(day_back as i64);
        let received = date
            .and_hms_opt(8 + next(12) as u32, next(60) as u32, 0)
            .unwrap()
            .and_local_timezone(bj)
            .unwrap()
            .with_timezone(&Utc);
        if received > now - hours(0.2) {
            continue;
        }
        let (text, code) = &history[next(history.len() as u64) as usize];
        let Some(item) = catalog.get(code) else {
            continue;
        };
        let place = &places[next(places.len() as u64) as usize];
        let unit = match &item.responsibility {
            Responsibility::Functional { unit } => unit.clone(),
            Responsibility::Territorial => place.street.clone(),
        };
        let it = Item {
            code: item.code.clone(),
            name: item.name.clone(),
            category: item.path[0].clone(),
            unit: unit.clone(),
        };
        let roll = next(100);
        let mut spec = Spec {
            received,
            text,
            item: &it,
            place,
            decision: "auto",
            status: TicketStatus::NeedsDispatcher,
            duplicate_of: None,
            steps: vec![],
            handling: None,
        };
        if roll < 5 && day_back < 4 {
            spec.decision = "needs_dispatcher";
            seeder.seed(spec).await;
            continue;
        }
        let dispatched = received + hours(0.3 + next(30) as f64 / 10.0);
        let accept_by = dispatched + hours(4.0);
        let complete_by = dispatched + chrono::Duration::days(3 + next(10) as i64);
        let mut h = json!({
            "state": "dispatched", "lead_unit": unit, "dispatched_at": ts(dispatched),
            "accept_by": ts(accept_by), "complete_by": ts(complete_by),
        });
        let mut steps = vec![("dispatched", dispatched)];
        if roll < 12 {
            // Returned once, then dispatched again by hand.
            let back = dispatched + hours(1.0);
            h["returns"] = json!([ret(&unit, back)]);
            h["manual"] = json!(true);
            steps.push(("returned", back));
            steps.push(("dispatched", back + hours(0.5)));
        }
        if roll == 12 && day_back < 10 {
            let other = &places[next(places.len() as u64) as usize].street;
            h["state"] = json!("arbitration");
            h["returns"] = json!([
                ret(&unit, dispatched + hours(1.0)),
                ret(other, dispatched + hours(2.0))
            ]);
            h["arbitration"] = json!({"reason": "returned 2 times", "escalated_at": ts(dispatched + hours(2.0)),
                                      "candidates": [unit, other]});
            spec.status = TicketStatus::InArbitration;
            spec.steps = steps;
            spec.handling = Some(h);
            seeder.seed(spec).await;
            continue;
        }
        let accepted = dispatched + hours(0.5 + next(60) as f64 / 10.0);
        if accepted < now {
            h["state"] = json!("accepted");
            h["accepted_at"] = json!(ts(accepted));
            steps.push(("accepted", accepted));
            let completed = accepted + hours(4.0 + next(24 * 9) as f64);
            if completed < now && next(10) < 8 {
                h["state"] = json!("called_back");
                h["completed_at"] = json!(ts(completed));
                let rating = match next(20) {
                    0 => "dissatisfied",
                    1..=3 => "basically_satisfied",
                    _ => "satisfied",
                };
                h["callback"] = callback(
                    rating,
                    if rating == "dissatisfied" {
                        "citizen"
                    } else {
                        ""
                    },
                    completed + hours(20.0),
                );
                if next(8) == 0 {
                    h["extensions"] = json!([{"working_days": 3, "reason": "需协调", "requested_by": "h",
                        "requested_at": ts(accepted + hours(2.0)), "approved": true}]);
                }
                steps.push(("completed", completed));
            }
        }
        spec.status = TicketStatus::Dispatched;
        spec.steps = steps;
        spec.handling = Some(h);
        seeder.seed(spec).await;
    }
    // A hotspot: the same complaint from one community over the last two days.
    let catalog_item = catalog.get("CG-05-039").unwrap();
    let it = Item {
        code: catalog_item.code.clone(),
        name: catalog_item.name.clone(),
        category: catalog_item.path[0].clone(),
        unit: "DEP-CG".into(),
    };
    for (k, text) in [
        "东周社区华夏路大排档每天凌晨喧哗，噪声扰民，请回电13912345678",
        "华夏路大排档每天凌晨喧哗噪声扰民严重",
        "东周社区华夏路大排档每天凌晨都很吵，噪声扰民",
        "华夏路大排档凌晨喧哗，噪声扰民，孩子睡不着",
        "东周社区华夏路大排档每天凌晨喧哗噪声扰民，多次反映无果",
    ]
    .iter()
    .enumerate()
    {
        seeder
            .seed(Spec {
                received: now - hours(40.0 - 8.0 * k as f64),
                text,
                item: &it,
                place: &DONGZHOU,
                decision: "auto",
                status: TicketStatus::Dispatched,
                duplicate_of: None,
                steps: vec![("dispatched", now - hours(39.0 - 8.0 * k as f64))],
                handling: Some(json!({
                    "state": "dispatched", "lead_unit": "DEP-CG",
                    "dispatched_at": ts(now - hours(39.0 - 8.0 * k as f64)),
                    "accept_by": ts(now + hours(2.0)), "complete_by": ts(now + hours(200.0)),
                })),
            })
            .await;
    }
}
