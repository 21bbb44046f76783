//! Intake over gRPC, on both backend sets: submit, validation, idempotency, roles, masking,
//! follow-ups, paging, and the `ticket.received` event on the bus.

mod support;

use std::time::Duration;

use minyi_core::auth::Role;
use minyi_proto::common::{Caller, GeoPoint, Location};
use minyi_proto::intake::{
    AddFollowUpRequest, GetTicketRequest, ListTicketsRequest, SubmitPetitionRequest,
};
use support::{Backend, spawn_app};
use tonic_types::StatusExt;

fn petition(key: &str) -> SubmitPetitionRequest {
    SubmitPetitionRequest {
        channel: 1,
        text: "楼下烧烤店油烟直排，晚上十点后还很吵".into(),
        title: "油烟噪音".into(),
        caller: Some(Caller {
            anonymous: false,
            name: "王小明".into(),
            phone: "13912345678".into(),
            id_number: "11010519491231002X".into(),
        }),
        location: Some(Location {
            address: "光明街道碧眼社区华夏路".into(),
            point: Some(GeoPoint {
                latitude: 22.78,
                longitude: 113.92,
            }),
        }),
        event_time: None,
        attachment_urls: vec!["https://img.example.org/1.jpg".into()],
        idempotency_key: key.into(),
    }
}

async fn submit_show_list_follow_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut agent = app.intake(Some(Role::Agent)).await;

    let r = agent
        .submit_petition(petition("call-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created);
    let t = r.ticket.unwrap();
    assert!(t.tracking_number.starts_with("MY-"));
    assert_eq!(
        t.caller.as_ref().unwrap().phone,
        "13912345678",
        "agents see the caller"
    );

    // Idempotency: same key, same ticket, nothing new.
    let again = agent
        .submit_petition(petition("call-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.ticket.unwrap().id, t.id);

    // Get by tracking number.
    let got = agent
        .get_ticket(GetTicketRequest {
            id: t.tracking_number.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, t.id);
    assert_eq!(got.text, "楼下烧烤店油烟直排，晚上十点后还很吵");

    // Supervisors see masked personal data.
    let mut sup = app.intake(Some(Role::Supervisor)).await;
    let masked = sup
        .get_ticket(GetTicketRequest { id: t.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let c = masked.caller.unwrap();
    assert_eq!(c.phone, "139****5678");
    assert_eq!(c.name, "王**");
    assert_eq!(c.id_number, "110***********002X");

    // Paging through 5 tickets, 2 at a time, newest first.
    for i in 0..4 {
        let mut p = petition(&format!("page-{i}"));
        p.caller = None;
        // Other matters: the same one at the same place would be linked to whichever of them
        // classification decides first, and the first ticket must stay open for its follow-up.
        p.text = [
            "井盖丢失，行人容易掉下去",
            "路灯坏了一个多月",
            "小区垃圾没人清运",
            "公交站牌被撞倒",
        ][i]
            .into();
        agent.submit_petition(p).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = agent
            .list_tickets(ListTicketsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..ListTicketsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.tickets.len() <= 2);
        seen.extend(page.tickets.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.last(), Some(&t.id), "oldest last");

    // Follow-up.
    let f = agent
        .add_follow_up(AddFollowUpRequest {
            id: t.id.clone(),
            text: "补充：周末更严重".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.follow_ups.len(), 1);
    assert_eq!(f.follow_ups[0].author, "test-agent");
    app.stop().await;
}

/// A page of long petitions is cut by size, below what a gRPC client accepts by default
/// (4 MiB), and the rest follows on the next pages: 60 petitions of 20,000 characters
/// (3.6 MB of text) asked for in one page of 500 come in two, none lost or repeated.
#[tokio::test]
async fn a_page_of_long_petitions_stays_under_the_message_limit() {
    let app = spawn_app(Backend::Embedded).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    for i in 0..60 {
        let mut p = petition(&format!("long-{i}"));
        let filler = char::from_u32(0x4e00 + i).unwrap();
        p.text = format!("{i}号楼{}", filler.to_string().repeat(19_990));
        agent.submit_petition(p).await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let page = agent
            .list_tickets(ListTicketsRequest {
                page_size: 500,
                page_token: token.clone(),
                ..ListTicketsRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        for t in page.tickets {
            assert!(seen.insert(t.id), "a ticket on two pages");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 60);
    assert!(pages >= 2, "one page of {} bytes", 60 * 60_000);
    app.stop().await;
}

/// A ticket takes a bounded number of follow-ups, so that it stays readable in one gRPC
/// message: by characters (ten of 20,000 fill it) and by count (100), each refused with a
/// reason, and the full ticket still reads.
#[tokio::test]
async fn a_full_ticket_refuses_further_follow_ups() {
    let app = spawn_app(Backend::Embedded).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    let follow_up = |id: &str, text: String| AddFollowUpRequest {
        id: id.to_owned(),
        text,
    };

    let long = agent.submit_petition(petition("full-long")).await.unwrap();
    let long = long.into_inner().ticket.unwrap();
    for i in 0..10 {
        let text = format!("{i}{}", "补".repeat(19_999));
        agent
            .add_follow_up(follow_up(&long.id, text))
            .await
            .unwrap();
    }
    let refused = agent
        .add_follow_up(follow_up(&long.id, "再补一句".into()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("200000 characters in all"),
        "{}",
        refused.message()
    );
    let read = agent
        .get_ticket(GetTicketRequest { id: long.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.follow_ups.len(), 10);

    // Another complaint (the same one again would be linked to the first as a duplicate).
    let mut other = petition("full-many");
    other.text = "小区电梯故障停运一周，老人上下楼困难".into();
    let many = agent.submit_petition(other).await.unwrap();
    let many = many.into_inner().ticket.unwrap();
    for i in 0..100 {
        agent
            .add_follow_up(follow_up(&many.id, format!("第{i}次来电")))
            .await
            .unwrap();
    }
    let refused = agent
        .add_follow_up(follow_up(&many.id, "第101次来电".into()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("holds 100 follow-ups"));
    app.stop().await;
}

#[tokio::test]
async fn embedded_submit_show_list_follow_up() {
    submit_show_list_follow_up(Backend::Embedded).await;
}

#[tokio::test]
async fn production_submit_show_list_follow_up() {
    submit_show_list_follow_up(Backend::Production).await;
}

async fn validation_lists_every_bad_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    let mut p = petition("");
    p.channel = 42;
    p.text = "x".repeat(20_001);
    p.caller = Some(Caller {
        anonymous: false,
        name: String::new(),
        phone: "0000".into(),
        id_number: "110105194912310021".into(),
    });
    p.location = Some(Location {
        address: String::new(),
        point: Some(GeoPoint {
            latitude: -91.0,
            longitude: 181.0,
        }),
    });
    let err = agent.submit_petition(p).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "channel",
            "text",
            "caller.phone",
            "caller.id_number",
            "location.point.latitude",
            "location.point.longitude"
        ]
    );
    // Nothing was stored.
    assert_eq!(support::store(&app).count_tickets().await.unwrap(), 0);
    app.stop().await;
}

#[tokio::test]
async fn embedded_validation_lists_every_bad_field() {
    validation_lists_every_bad_field(Backend::Embedded).await;
}

#[tokio::test]
async fn production_validation_lists_every_bad_field() {
    validation_lists_every_bad_field(Backend::Production).await;
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let app = spawn_app(Backend::Embedded).await;
    let mut anonymous = app.intake(None).await;
    let e = anonymous.submit_petition(petition("x")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    let mut handler = app.intake(Some(Role::Handler)).await;
    let e = handler.submit_petition(petition("x")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = handler
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // A token signed with another secret is refused.
    let other = minyi_core::auth::TokenAuthority::new(b"some-other-secret-some-other-secr");
    let forged = other
        .issue("evil", Role::Admin, None, chrono::Duration::hours(1))
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = minyi_proto::intake::intake_service_client::IntakeServiceClient::new(channel);
    let mut req = tonic::Request::new(ListTicketsRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {forged}").parse().unwrap());
    assert_eq!(
        c.list_tickets(req).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    app.stop().await;
}

async fn received_event_reaches_the_bus_without_personal_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut sub = app
        .backends
        .bus
        .subscribe("classification", &["ticket.received"])
        .await
        .unwrap();
    let mut agent = app.intake(Some(Role::Agent)).await;
    let t = agent
        .submit_petition(petition("evt"))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("event within 10 s")
        .unwrap();
    let event = minyi_core::event::decode(&d.message.payload).expect("an Event");
    assert_eq!(event.ticket_id, t.id);
    let raw = String::from_utf8_lossy(&d.message.payload);
    for secret in ["13912345678", "王小明", "11010519491231002X"] {
        assert!(!raw.contains(secret), "{secret} leaked onto the bus");
    }
    d.ack().await.unwrap();
    // The outbox is drained once the broker confirmed.
    for _ in 0..50 {
        if support::store(&app).outbox_len().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(support::store(&app).outbox_len().await.unwrap(), 0);
    app.stop().await;
}

#[tokio::test]
async fn embedded_received_event_reaches_the_bus() {
    received_event_reaches_the_bus_without_personal_data(Backend::Embedded).await;
}

#[tokio::test]
async fn production_received_event_reaches_the_bus() {
    received_event_reaches_the_bus_without_personal_data(Backend::Production).await;
}

#[tokio::test]
async fn personal_data_is_sealed_at_rest() {
    let app = spawn_app(Backend::Production).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    agent.submit_petition(petition("pii")).await.unwrap();
    let url = app.config.database_url.clone().unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let row: (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT caller_name, caller_phone, caller_id_number FROM tickets")
            .fetch_one(&pool)
            .await
            .unwrap();
    for (v, plain) in [
        (row.0, "王小明"),
        (row.1, "13912345678"),
        (row.2, "11010519491231002X"),
    ] {
        let v = v.expect("stored");
        assert!(!v.contains(plain));
        assert!(v.starts_with("k1:"), "key id stored for rotation: {v}");
    }
    app.stop().await;
}

/// `GET /metrics` on the HTTP port: the Prometheus text format, calls counted by method and
/// code, the backends' gauges, and no personal data.
async fn metrics_count_calls_and_read_the_backends(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    agent.submit_petition(petition("metrics-1")).await.unwrap();
    let mut bad = petition("metrics-2");
    bad.text = String::new();
    agent.submit_petition(bad).await.unwrap_err();

    let scrape = || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(app.http).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        raw
    };
    let mut raw = scrape().await;
    if backend == Backend::Embedded {
        // The dashboard runs here too: its overdue count appears once its model is loaded, and
        // the classification consumer reports its lag once it handled the petition. (The lag
        // is process-wide: another test's app in this binary may have set it, so the
        // classifier's own model is waited for as well.)
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(raw.contains("\nminyi_tickets_overdue 0\n")
            && raw.contains("minyi_consumer_lag_seconds{consumer=\"classification\"}")
            && raw.contains("minyi_classifier_model_info{model=\""))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no overdue gauge:\n{raw}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            raw = scrape().await;
        }
    }
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("text/plain; version=0.0.4"), "{raw}");
    let submit = "method=\"/minyi.intake.v1.IntakeService/SubmitPetition\"";
    for want in [
        format!("minyi_rpc_requests_total{{{submit},code=\"OK\"}} 1"),
        format!("minyi_rpc_requests_total{{{submit},code=\"InvalidArgument\"}} 1"),
        format!("minyi_rpc_duration_seconds_count{{{submit}}} 2"),
        format!("minyi_rpc_duration_seconds_bucket{{{submit},le=\"+Inf\"}} 2"),
        "# TYPE minyi_rpc_duration_seconds histogram".to_owned(),
        "minyi_outbox_pending ".to_owned(),
        "minyi_bus_queue_depth{queue=\"classification\"}".to_owned(),
        "minyi_bus_dead_letters{queue=\"dispatch\"} 0".to_owned(),
        "# TYPE minyi_tickets_received_total counter".to_owned(),
        "minyi_catalog_version_info{version=\"v1\"} 1".to_owned(),
    ] {
        assert!(raw.contains(&want), "missing {want} in:\n{raw}");
    }
    assert!(!raw.contains("13912345678") && !raw.contains("王小明"));
    if backend == Backend::Embedded {
        // Embedded mode runs every service, so every series the operators' Grafana dashboard
        // and alerting rules query must be exported here under that very name.
        assert!(raw.contains("\nminyi_tickets_at_risk 0\n"), "{raw}");
        // The classifier is ready: it handled the petition.
        assert!(
            raw.contains("minyi_classifier_model_info{model=\""),
            "{raw}"
        );
        // Only processes serving TLS export the certificate's expiry (tls.rs checks it there).
        let tls_only = ["minyi_tls_certificate_expiry_timestamp_seconds"];
        for series in queried_series()
            .iter()
            .filter(|s| !tls_only.contains(&s.as_str()))
        {
            assert!(
                raw.contains(&format!("# TYPE {series} ")),
                "the Grafana dashboard or the alerting rules query {series}, which /metrics does not export:\n{raw}"
            );
        }
    }
    app.stop().await;
}

/// The metric families the Grafana dashboard's queries and the alerting rules name
/// (histogram suffixes removed).
fn queried_series() -> std::collections::BTreeSet<String> {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/");
    let read = |file: &str| std::fs::read_to_string(format!("{deploy}{file}")).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/minyi.json")).unwrap();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    // The whole rules file: its summaries name series too.
    exprs.push(read("prometheus-alerts.yml"));
    let mut series = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("minyi_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            series.insert(family);
        }
    }
    assert!(series.len() >= 8, "too few series found: {series:?}");
    series
}

#[tokio::test]
async fn embedded_metrics() {
    metrics_count_calls_and_read_the_backends(Backend::Embedded).await;
}

#[tokio::test]
async fn production_metrics() {
    metrics_count_calls_and_read_the_backends(Backend::Production).await;
}

/// A data directory from a version before SQLite: its journal is imported into `minyi.db`
/// once, then renamed; the next start opens the database alone.
#[tokio::test]
async fn an_old_journal_is_imported_into_the_embedded_database() {
    use minyi_core::store::{MemoryStore, TicketStore};
    let dir = tempfile::tempdir().unwrap();
    let old = MemoryStore::open(&dir.path().join("journal.jsonl")).unwrap();
    let record = minyi_core::store::TicketRecord {
        idempotency_key: Some("call-1".into()),
        ..minyi_core::testing::ticket_record("路灯不亮", chrono::Utc::now())
    };
    let (before, _) = old.create_ticket(record, vec![]).await.unwrap();
    drop(old);

    let store = minyi::app::embedded_store(dir.path()).await.unwrap();
    assert_eq!(
        store.get_ticket(&before.tracking_number).await.unwrap(),
        before
    );
    assert!(!dir.path().join("journal.jsonl").exists());
    assert!(dir.path().join("journal.jsonl.imported").exists());
    store.close().await;
    let again = minyi::app::embedded_store(dir.path()).await.unwrap();
    assert_eq!(again.count_tickets().await.unwrap(), 1);
}
