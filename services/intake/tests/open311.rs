//! Open311 GeoReport v2, driven over real HTTP the way a 311 app drives it: the router is
//! bound to 127.0.0.1:0 and spoken to with a minimal HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use minyi_catalog::{Catalog, CatalogItem, Grade};
use minyi_core::auth::{Role, TokenAuthority};
use minyi_core::clock::SystemClock;
use minyi_core::petition::{Channel, IntakeLimits};
use minyi_core::pii::Keyring;
use minyi_core::store::{FollowUpRecord, MemoryStore, TicketRecord};
use minyi_intake::IntakeApi;
use minyi_intake::open311::{Open311State, router};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const PHONE: &str = "13912345678";
const NAME_GIVEN: &str = "晓红";
const NAME_FAMILY: &str = "欧阳";
const EMAIL: &str = "xiaohong@example.org";

fn catalog() -> Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    CATALOG.get_or_init(|| Arc::new(Catalog::demo())).clone()
}

fn item(grade: Grade) -> CatalogItem {
    catalog()
        .items()
        .iter()
        .find(|i| i.grade == grade)
        .cloned()
        .expect("the demo catalog has items of both grades")
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts the standard's error shape: `[{"code": status, "description": …}]`.
    fn assert_error(&self, status: u16, mentions: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        let errors = v.as_array().expect("errors are a list");
        assert!(!errors.is_empty());
        for e in errors {
            assert_eq!(e["code"], status, "{}", self.body);
            assert!(e["description"].is_string());
        }
        assert!(
            self.body.contains(mentions),
            "expected {mentions:?} in {}",
            self.body
        );
        for leak in [
            "panicked",
            "sqlx",
            "InvalidSignature",
            "jsonwebtoken",
            "Status {",
        ] {
            assert!(
                !self.body.contains(leak),
                "internal text leaked: {}",
                self.body
            );
        }
    }
}

struct TestApp {
    addr: SocketAddr,
    intake: IntakeApi,
    authority: TokenAuthority,
    /// Every response body, for the personal-data check.
    seen: Mutex<Vec<String>>,
}

async fn spawn_app() -> TestApp {
    let keyring = Keyring::new("k1", [("k1", Keyring::generate_key().as_str())])
        .expect("a fresh key is valid");
    let intake = IntakeApi::new(
        Arc::new(MemoryStore::ephemeral()),
        keyring,
        IntakeLimits::default(),
        Arc::new(SystemClock),
        Arc::new(Notify::new()),
    );
    let authority = TokenAuthority::new(b"open311-test-secret-0123456789abcdef");
    let state = Open311State::new(intake.clone(), catalog(), authority.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    TestApp {
        addr,
        intake,
        authority,
        seen: Mutex::new(Vec::new()),
    }
}

impl TestApp {
    fn key(&self, role: Role) -> String {
        let unit = (role == Role::Handler).then_some("ST-GM");
        self.authority
            .issue("open311-app", role, unit, chrono::Duration::hours(1))
            .expect("issue token")
    }

    /// One request on a fresh connection, as a plain HTTP/1.1 client does it.
    async fn send(&self, method: &str, path: &str, form: Option<&str>) -> Reply {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test-311-app\r\nConnection: close\r\n"
        );
        if let Some(body) = form {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let mut content_type = String::new();
        let mut chunked = false;
        for l in lines {
            let (k, v) = l.split_once(':').expect("header");
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = v.trim().to_owned(),
                "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        if chunked {
            body = dechunk(&body);
        }
        let body = String::from_utf8(body).expect("UTF-8 body");
        self.seen.lock().unwrap().push(body.clone());
        Reply {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let form = serde_urlencoded::to_string(fields).expect("encode form");
        self.send("POST", path, Some(&form)).await
    }

    async fn post_owned(&self, path: &str, fields: Vec<(String, String)>) -> Reply {
        let form = serde_urlencoded::to_string(&fields).expect("encode form");
        self.send("POST", path, Some(&form)).await
    }

    async fn ticket(&self, id: &str) -> TicketRecord {
        self.intake.store().get_ticket(id).await.expect("ticket")
    }
}

/// `defaults` with `extra` fields replacing theirs; an empty value removes the field.
fn with(defaults: &[(&str, &str)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = defaults
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.extend(
        extra
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    f
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).expect("hex").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
}

/// A complete report for an urgent item, with personal data in every field that takes it.
fn urgent_report<'a>(key: &'a str, code: &'a str, description: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("api_key", key),
        ("service_code", code),
        ("description", description),
        ("lat", "22.7487"),
        ("long", "113.9355"),
        ("address_string", "光明区光明街道华夏路18号"),
        ("first_name", NAME_GIVEN),
        ("last_name", NAME_FAMILY),
        ("phone", PHONE),
        ("email", EMAIL),
        ("device_id", "device-42"),
        ("account_id", "acct-7"),
        ("media_url", "https://media.example.org/p/1.jpg"),
        ("attribute[immediate_danger]", "yes"),
        ("attribute[hazard_detail]", "井盖缺失，路口有积水"),
        ("jurisdiction_id", "guangming.shenzhen.gov.cn"),
    ]
}

fn tracking_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    v[0]["service_request_id"]
        .as_str()
        .expect("service_request_id")
        .to_owned()
}

#[tokio::test]
async fn services_are_listed_in_json_and_xml() {
    let app = spawn_app().await;
    let urgent = item(Grade::Urgent);
    let normal = item(Grade::Normal);

    let r = app.get("/open311/v2/services.json").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    let v = r.json();
    let list = v.as_array().expect("a list");
    assert_eq!(list.len(), catalog().len());
    assert_eq!(list.len(), 3469);
    let find = |code: &str| {
        list.iter()
            .find(|s| s["service_code"] == code)
            .cloned()
            .expect("listed")
    };
    let u = find(&urgent.code);
    assert_eq!(u["service_name"], urgent.name.as_str());
    assert_eq!(u["description"], urgent.description.as_str());
    assert_eq!(u["metadata"], true);
    assert_eq!(u["type"], "realtime");
    assert_eq!(u["keywords"], urgent.keywords.join(",").as_str());
    assert_eq!(u["group"], urgent.path[0].as_str());
    assert_eq!(find(&normal.code)["metadata"], false);

    let r = app.get("/open311/v2/services.xml").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/xml"));
    assert!(
        r.body
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<services><service>")
    );
    assert_eq!(r.body.matches("<service>").count(), 3469);
    assert!(r.body.contains(&format!(
        "<service_code>{}</service_code><service_name>{}</service_name>",
        urgent.code, urgent.name
    )));
    assert!(
        r.body
            .contains("<metadata>true</metadata><type>realtime</type>")
    );
    assert!(r.body.trim_end().ends_with("</service></services>"));
}

#[tokio::test]
async fn service_definitions_carry_attributes() {
    let app = spawn_app().await;
    let urgent = item(Grade::Urgent);

    let r = app
        .get(&format!("/open311/v2/services/{}.json", urgent.code))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["service_code"], urgent.code.as_str());
    let attrs = v["attributes"].as_array().expect("attributes");
    let danger = attrs
        .iter()
        .find(|a| a["datatype"] == "singlevaluelist")
        .expect("a singlevaluelist");
    assert_eq!(danger["code"], "immediate_danger");
    assert_eq!(danger["variable"], true);
    assert_eq!(danger["required"], true);
    assert_eq!(danger["order"], 1);
    let keys: Vec<&str> = danger["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|x| x["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["yes", "no", "unsure"]);
    let detail = attrs
        .iter()
        .find(|a| a["datatype"] == "string")
        .expect("a string attribute");
    assert_eq!(detail["required"], false);

    let r = app
        .get(&format!("/open311/v2/services/{}.xml", urgent.code))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!(
        "<service_definition><service_code>{}</service_code><attributes><attribute><variable>true</variable><code>immediate_danger</code><datatype>singlevaluelist</datatype><required>true</required>",
        urgent.code
    )));
    assert!(
        r.body
            .contains("<values><value><key>yes</key><name>是 Yes</name></value>")
    );

    let normal = item(Grade::Normal);
    let r = app
        .get(&format!("/open311/v2/services/{}.json", normal.code))
        .await;
    assert_eq!(r.json()["attributes"], serde_json::json!([]));

    app.get("/open311/v2/services/NO-SUCH-CODE.json")
        .await
        .assert_error(404, "NO-SUCH-CODE");
    let r = app.get("/open311/v2/services/NO-SUCH-CODE.xml").await;
    assert_eq!(r.status, 404);
    assert!(r.content_type.starts_with("text/xml"));
    assert!(
        r.body
            .contains("<errors><error><code>404</code><description>")
    );
}

#[tokio::test]
async fn a_report_is_filed_once_and_read_back_everywhere_without_personal_data() {
    let app = spawn_app().await;
    let key = app.key(Role::Agent);
    let urgent = item(Grade::Urgent);
    let description = "华夏路与光明大道路口井盖缺失，晚上很危险";

    // POST, as a 311 app does.
    let r = app
        .post(
            "/open311/v2/requests.json",
            &urgent_report(&key, &urgent.code, description),
        )
        .await;
    let tracking = tracking_of(&r);
    assert!(tracking.starts_with("MY-"), "{tracking}");
    let v = r.json();
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert!(v[0]["service_notice"].as_str().unwrap().contains(&tracking));
    assert_eq!(v[0]["account_id"], Value::Null);

    // The ticket really is in the store, filed through Open311, with the data sealed.
    let t = app.ticket(&tracking).await;
    assert_eq!(t.channel, Channel::Open311);
    assert_eq!(t.title, format!("[{}] {}", urgent.code, urgent.name));
    assert!(t.text.starts_with(description));
    assert!(t.text.contains("immediate danger?: 是 Yes"), "{}", t.text);
    assert!(t.text.contains("井盖缺失，路口有积水"));
    assert_eq!(t.received_by, "open311-app");
    assert_eq!(t.latitude, Some(22.7487));
    assert_eq!(t.longitude, Some(113.9355));
    assert_eq!(t.attachment_urls, ["https://media.example.org/p/1.jpg"]);
    assert!(!t.anonymous);
    let sealed_phone = t.caller_phone.clone().expect("phone kept, sealed");
    assert!(!sealed_phone.contains(PHONE));
    assert_eq!(app.intake.keyring().open(&sealed_phone).unwrap(), PHONE);
    let sealed_name = t.caller_name.clone().expect("name kept, sealed");
    assert_eq!(
        app.intake.keyring().open(&sealed_name).unwrap(),
        format!("{NAME_FAMILY}{NAME_GIVEN}")
    );
    assert!(!serde_json::to_string(&t).unwrap().contains(EMAIL));

    // Re-POSTing the same report (a retry after a timeout) does not file it twice.
    let again = app
        .post(
            "/open311/v2/requests.xml",
            &urgent_report(&key, &urgent.code, description),
        )
        .await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains(&format!(
        "<service_requests><request><service_request_id>{tracking}</service_request_id><service_notice>"
    )));
    assert!(again.body.contains("<account_id></account_id>"));
    assert_eq!(app.intake.store().count_tickets().await.unwrap(), 1);

    // GET requests/{id}, by tracking number and by id, in both formats.
    for id in [tracking.clone(), t.id.to_string()] {
        let r = app.get(&format!("/open311/v2/requests/{id}.json")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let req = &v[0];
        assert_eq!(req["service_request_id"], tracking.as_str());
        assert_eq!(req["status"], "open");
        assert!(req["status_notes"].as_str().unwrap().contains("Received"));
        assert_eq!(req["service_code"], urgent.code.as_str());
        assert_eq!(req["service_name"], urgent.name.as_str());
        assert!(
            req["description"]
                .as_str()
                .unwrap()
                .starts_with(description)
        );
        assert_eq!(req["agency_responsible"], "");
        assert_eq!(req["expected_datetime"], "");
        let requested = req["requested_datetime"].as_str().unwrap();
        assert!(requested.ends_with("+08:00"), "{requested}");
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(requested)
                .unwrap()
                .timestamp(),
            t.received_at.timestamp()
        );
        assert_eq!(req["address"], "光明区光明街道华夏路18号");
        assert_eq!(req["lat"], 22.7487);
        assert_eq!(req["long"], 113.9355);
        assert_eq!(req["media_url"], "https://media.example.org/p/1.jpg");
    }
    let r = app
        .get(&format!("/open311/v2/requests/{tracking}.xml"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!(
        "<service_requests><request><service_request_id>{tracking}</service_request_id><status>open</status>"
    )));
    assert!(r.body.contains("<lat>22.7487</lat><long>113.9355</long>"));

    // In the list, with and without filters.
    let listed = |r: &Reply| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["service_request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let one = vec![tracking.clone()];
    assert_eq!(listed(&app.get("/open311/v2/requests.json").await), one);
    assert_eq!(
        listed(&app.get("/open311/v2/requests.json?status=open").await),
        one
    );
    assert!(listed(&app.get("/open311/v2/requests.json?status=closed").await).is_empty());
    assert_eq!(
        listed(
            &app.get(&format!(
                "/open311/v2/requests.json?service_code={}",
                urgent.code
            ))
            .await
        ),
        one
    );
    assert!(
        listed(
            &app.get(&format!(
                "/open311/v2/requests.json?service_code={}",
                item(Grade::Normal).code
            ))
            .await
        )
        .is_empty()
    );
    assert_eq!(
        listed(
            &app.get(&format!(
                "/open311/v2/requests.json?service_request_id={tracking},MY-19990101-000001"
            ))
            .await
        ),
        one
    );
    let start = (t.received_at - chrono::Duration::hours(1)).to_rfc3339();
    let end = (t.received_at + chrono::Duration::hours(1)).to_rfc3339();
    let window = format!(
        "start_date={}&end_date={}",
        urlencode(&start),
        urlencode(&end)
    );
    assert_eq!(
        listed(
            &app.get(&format!("/open311/v2/requests.json?{window}"))
                .await
        ),
        one
    );
    let later = urlencode(&(t.received_at + chrono::Duration::minutes(5)).to_rfc3339());
    assert!(
        listed(
            &app.get(&format!("/open311/v2/requests.json?start_date={later}"))
                .await
        )
        .is_empty()
    );
    let r = app.get("/open311/v2/requests.xml").await;
    assert!(
        r.body
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<service_requests><request>")
    );

    // The token is the tracking number.
    let r = app
        .get(&format!("/open311/v2/tokens/{tracking}.json"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!([{"service_request_id": tracking, "token": tracking}])
    );
    let r = app.get(&format!("/open311/v2/tokens/{tracking}.xml")).await;
    assert!(r.body.contains(&format!(
        "<service_requests><request><service_request_id>{tracking}</service_request_id><token>{tracking}</token></request></service_requests>"
    )));
    app.get("/open311/v2/tokens/MY-19990101-000001.json")
        .await
        .assert_error(404, "MY-19990101-000001");

    // Updates: the receipt, then a follow-up (which carries a number the citizen typed).
    let r = app.get("/open311/v2/servicerequestupdates.json").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["service_request_id"], tracking.as_str());
    assert_eq!(v[0]["update_id"], format!("{tracking}-0").as_str());
    assert_eq!(v[0]["status"], "open");
    assert!(
        v[0]["updated_datetime"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
    app.intake
        .store()
        .add_follow_up(
            t.id,
            FollowUpRecord {
                text: format!("市民来电补充：积水已到膝盖，联系电话{PHONE}"),
                author: "agent-1".into(),
                at: t.received_at + chrono::Duration::minutes(1),
            },
            vec![],
        )
        .await
        .unwrap();
    let r = app
        .get(&format!("/open311/v2/servicerequestupdates.json?{window}"))
        .await;
    let v = r.json();
    let updates = v.as_array().unwrap();
    assert_eq!(updates.len(), 2, "{}", r.body);
    // Ids: 0 receipt, 1 classification (not running here), 2.. follow-ups.
    assert_eq!(updates[0]["update_id"], format!("{tracking}-2").as_str());
    assert!(
        updates[0]["description"]
            .as_str()
            .unwrap()
            .contains("积水已到膝盖")
    );
    assert_eq!(updates[0]["media_url"], "");
    let r = app
        .get(&format!("/open311/v2/servicerequestupdates.xml?{window}"))
        .await;
    assert!(r.body.contains(&format!(
        "<service_requests_updates><request_update><update_id>{tracking}-2</update_id><service_request_id>{tracking}</service_request_id><status>open</status>"
    )));
    let r = app
        .get(&format!("/open311/v2/requests/{tracking}.json"))
        .await;
    assert_ne!(
        r.json()[0]["updated_datetime"],
        r.json()[0]["requested_datetime"]
    );

    // No personal data in any response body: not the phone (in whole or in the usual
    // fragments), the name, the email or the app's account id.
    let seen = app.seen.lock().unwrap();
    assert!(seen.len() > 20);
    for body in seen.iter() {
        for secret in [PHONE, &PHONE[3..], NAME_GIVEN, NAME_FAMILY, EMAIL, "acct-7"] {
            assert!(!body.contains(secret), "{secret:?} leaked in {body}");
        }
    }
}

#[tokio::test]
async fn without_a_service_code_minyi_classifies() {
    let app = spawn_app().await;
    let key = app.key(Role::Admin);
    let r = app
        .post(
            "/open311/v2/requests.json",
            &[
                ("api_key", key.as_str()),
                ("description", "小区门口垃圾三天没人清理"),
                ("address_string", "公明街道上村社区"),
            ],
        )
        .await;
    let tracking = tracking_of(&r);
    let t = app.ticket(&tracking).await;
    assert_eq!(t.title, "");
    assert!(t.anonymous);
    assert_eq!(t.channel, Channel::Open311);
    let r = app
        .get(&format!("/open311/v2/requests/{tracking}.json"))
        .await;
    let v = r.json();
    assert_eq!(v[0]["service_code"], "");
    assert_eq!(v[0]["lat"], Value::Null);
    assert_eq!(v[0]["address"], "公明街道上村社区");

    // A different description from the same app is a different report.
    let r = app
        .post(
            "/open311/v2/requests.json",
            &[
                ("api_key", key.as_str()),
                ("description", "小区门口垃圾四天没人清理"),
                ("address_string", "公明街道上村社区"),
            ],
        )
        .await;
    assert_ne!(tracking_of(&r), tracking);
    assert_eq!(app.intake.store().count_tickets().await.unwrap(), 2);
}

#[tokio::test]
async fn errors_follow_the_standard() {
    let app = spawn_app().await;
    let agent = app.key(Role::Agent);
    let normal = item(Grade::Normal);
    let urgent = item(Grade::Urgent);
    let defaults = [
        ("api_key", agent.as_str()),
        ("service_code", normal.code.as_str()),
        ("description", "路灯不亮"),
        ("lat", "22.75"),
        ("long", "113.93"),
    ];
    let base = |extra: &[(&str, &str)]| with(&defaults, extra);
    let post = |fields: Vec<(String, String)>| app.post_owned("/open311/v2/requests.json", fields);

    // Bad coordinates name the field.
    post(base(&[("lat", "north")]))
        .await
        .assert_error(400, "lat: \\\"north\\\" is not a decimal number");
    post(base(&[("lat", "95")]))
        .await
        .assert_error(400, "lat: 95 is out of range");
    post(base(&[("long", "-181.5")]))
        .await
        .assert_error(400, "long: -181.5 is out of range");
    post(base(&[("long", "")]))
        .await
        .assert_error(400, "long: is required when lat is given");
    post(base(&[("lat", ""), ("long", "")]))
        .await
        .assert_error(400, "a location is required");

    // Unknown service codes, and a required attribute left out.
    post(base(&[("service_code", "XX-99-999")]))
        .await
        .assert_error(400, "service_code: unknown service code \\\"XX-99-999\\\"");
    post(base(&[("service_code", &urgent.code)]))
        .await
        .assert_error(400, "attribute[immediate_danger]: is required");
    post(base(&[
        ("service_code", &urgent.code),
        ("attribute[immediate_danger]", "perhaps"),
    ]))
    .await
    .assert_error(
        400,
        "attribute[immediate_danger]: must be one of yes, no, unsure",
    );

    // api_key: missing, garbage, wrong secret, wrong role. All 403, as the spec says.
    post(base(&[("api_key", "")]))
        .await
        .assert_error(403, "api_key was not provided");
    post(base(&[("api_key", "not-a-token")]))
        .await
        .assert_error(403, "api_key is invalid or expired");
    let foreign = TokenAuthority::new(b"another-secret-another-secret-xx")
        .issue("x", Role::Admin, None, chrono::Duration::hours(1))
        .unwrap();
    post(base(&[("api_key", &foreign)]))
        .await
        .assert_error(403, "api_key is invalid or expired");
    let handler = app.key(Role::Handler);
    post(base(&[("api_key", &handler)]))
        .await
        .assert_error(403, "agent or admin");
    // The key is also accepted in the query string.
    let form = serde_urlencoded::to_string(base(&[
        ("api_key", ""),
        ("description", "路灯不亮（查询串里的 api_key）"),
    ]))
    .unwrap();
    let r = app
        .send(
            "POST",
            &format!("/open311/v2/requests.json?api_key={agent}"),
            Some(&form),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Description: missing, blank, too long (characters, not bytes).
    post(base(&[("description", "")]))
        .await
        .assert_error(400, "description: is required");
    post(base(&[("description", "   ")]))
        .await
        .assert_error(400, "description: is required");
    post(base(&[("description", &"字".repeat(20_001))]))
        .await
        .assert_error(400, "description: is 20001 characters; the limit is 20000");
    let exact = "字".repeat(20_000);
    assert_eq!(post(base(&[("description", &exact)])).await.status, 200);

    // Every other free-text field has its limit, named as the client sent it.
    post(base(&[("address_string", &"路".repeat(501))]))
        .await
        .assert_error(400, "address_string: longer than 500 characters");
    post(base(&[("first_name", &"名".repeat(51))]))
        .await
        .assert_error(400, "first_name: longer than 50 characters");
    let long_url = format!("https://example.org/{}", "a".repeat(2048));
    post(base(&[("media_url", &long_url)]))
        .await
        .assert_error(400, "media_url: must be an http(s) URL");
    post(base(&[
        ("service_code", &urgent.code),
        ("attribute[immediate_danger]", "yes"),
        ("attribute[hazard_detail]", &"水".repeat(1001)),
    ]))
    .await
    .assert_error(400, "attribute[hazard_detail]: longer than 1000 characters");
    // A body over the server's limit (2 MiB) is refused whole, as an error list.
    let huge = serde_urlencoded::to_string(base(&[("description", &"a".repeat(3 << 20))])).unwrap();
    app.send("POST", "/open311/v2/requests.json", Some(&huge))
        .await
        .assert_error(413, "could not be read");
    // A trailing comma in a status list is tolerated.
    assert_eq!(
        app.get("/open311/v2/requests.json?status=open,")
            .await
            .status,
        200
    );

    // Other fields the core checks, named as the client sent them; all at once.
    let r = post(base(&[
        ("phone", "12345"),
        ("media_url", "ftp://x"),
        ("lat", "91"),
    ]))
    .await;
    r.assert_error(400, "phone: not a valid phone number");
    let v = r.json();
    let described: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["description"].as_str().unwrap())
        .collect();
    assert!(
        described.iter().any(|d| d.starts_with("lat: ")),
        "{described:?}"
    );
    assert!(
        described.iter().any(|d| d.starts_with("media_url: ")),
        "{described:?}"
    );

    // Jurisdiction.
    post(base(&[("jurisdiction_id", "elsewhere.example.org")]))
        .await
        .assert_error(404, "jurisdiction_id");
    app.get("/open311/v2/services.json?jurisdiction_id=elsewhere")
        .await
        .assert_error(404, "jurisdiction_id");

    // Formats, resources, ids, methods, bodies.
    app.get("/open311/v2/services.html")
        .await
        .assert_error(404, "unknown format");
    app.get("/open311/v2/services")
        .await
        .assert_error(404, "unknown format");
    app.post("/open311/v2/requests.csv", &[("api_key", agent.as_str())])
        .await
        .assert_error(404, "unknown format");
    app.get("/open311/v2/potholes.json")
        .await
        .assert_error(404, "unknown resource");
    app.get("/open311/v2/requests/MY-19990101-000001.json")
        .await
        .assert_error(404, "MY-19990101-000001");
    app.get("/open311/v2/requests/00000000-0000-7000-8000-000000000000.json")
        .await
        .assert_error(404, "was not found");
    let r = app.get("/open311/v2/requests/nope.xml").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("<errors><error><code>404</code>"));
    app.send("DELETE", "/open311/v2/requests/nope.json", None)
        .await
        .assert_error(405, "method not allowed");
    app.post("/open311/v2/services.json", &[])
        .await
        .assert_error(405, "read-only");
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let body = "{\"description\":\"x\"}";
    s.write_all(
        format!(
            "POST /open311/v2/requests.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 415"), "{raw}");
    assert!(raw.contains("[{\"code\":415,"), "{raw}");

    // Listing parameters.
    app.get("/open311/v2/requests.json?start_date=yesterday")
        .await
        .assert_error(400, "start_date");
    app.get(
        "/open311/v2/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z",
    )
    .await
    .assert_error(400, "more than 90 days");
    app.get(
        "/open311/v2/requests.json?start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z",
    )
    .await
    .assert_error(400, "after end_date");
    app.get("/open311/v2/requests.json?status=pending")
        .await
        .assert_error(400, "status");
    app.get("/open311/v2/servicerequestupdates.json?end_date=soon")
        .await
        .assert_error(400, "end_date");

    // Nothing was filed by the failed requests (two successes above).
    assert_eq!(app.intake.store().count_tickets().await.unwrap(), 2);
}

#[tokio::test]
async fn other_channels_stay_private() {
    let app = spawn_app().await;
    let (hotline, _) = app
        .intake
        .submit(
            minyi_core::petition::SubmissionInput {
                channel: Channel::Hotline.to_proto(),
                text: "热线来电：楼上漏水".into(),
                ..Default::default()
            },
            "agent-1",
        )
        .await
        .unwrap();
    app.get(&format!(
        "/open311/v2/requests/{}.json",
        hotline.tracking_number
    ))
    .await
    .assert_error(404, "was not found");
    let r = app.get("/open311/v2/requests.json").await;
    assert_eq!(r.json(), serde_json::json!([]));
    let r = app.get("/open311/v2/servicerequestupdates.json").await;
    assert_eq!(r.json(), serde_json::json!([]));
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

/// `GET requests` without dates covers the last 90 days and lists at most 1000, newest first.
#[tokio::test]
async fn listings_cover_ninety_days_and_at_most_a_thousand() {
    let app = spawn_app().await;
    let store = app.intake.store().clone();
    let now = chrono::Utc::now();
    let stored = |age: chrono::Duration, n: usize| TicketRecord {
        channel: Channel::Open311,
        received_by: "open311-app".into(),
        ..minyi_core::testing::ticket_record(&format!("路灯不亮 {n}"), now - age)
    };
    let (old, _) = store
        .create_ticket(stored(chrono::Duration::days(91), 0), vec![])
        .await
        .unwrap();
    for n in 1..=1001 {
        store
            .create_ticket(stored(chrono::Duration::minutes(n as i64), n), vec![])
            .await
            .unwrap();
    }
    let listed = app.get("/open311/v2/requests.json").await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1000);
    // Newest first: the ticket received a minute ago leads, the 1001st-newest is cut.
    assert!(listed[0]["description"].as_str().unwrap().ends_with(" 1"));
    assert!(
        listed[999]["description"]
            .as_str()
            .unwrap()
            .ends_with(" 1000")
    );
    assert!(
        !listed
            .iter()
            .any(|r| r["service_request_id"] == old.tracking_number.as_str())
    );
    // Asked for by date, the old one is there.
    let day = (now - chrono::Duration::days(91))
        .with_timezone(&minyi_core::clock::shanghai())
        .format("%Y-%m-%d");
    let dated = app
        .get(&format!(
            "/open311/v2/requests.json?start_date={day}&end_date={day}T23:59:59%2B08:00"
        ))
        .await
        .json();
    assert!(
        dated
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["service_request_id"] == old.tracking_number.as_str()),
        "{dated}"
    );
}
