//! `minyi-handler`, run as a program against a cluster on real backends: what a handler types,
//! what they read back, and how refusals look.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use minyi_catalog::model::Responsibility;
use minyi_core::auth::Role;
use minyi_core::petition::TicketStatus;
use minyi_proto::common::Location;
use minyi_proto::dispatch::DispatchRequest;
use minyi_proto::intake::{GetTicketRequest, SubmitPetitionRequest};
use serde_json::Value;
use support::{Cluster, spawn_cluster};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tonic::Code;

/// The built binary: `MINYI_HANDLER_BIN`, or next to `minyi` in the target directory.
fn handler_bin() -> PathBuf {
    let bin = std::env::var("MINYI_HANDLER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("debug/minyi-handler")
        });
    assert!(
        bin.exists(),
        "{} missing: `cargo build -p minyi --bins`",
        bin.display()
    );
    bin
}

/// A handler's shell (`minyi-handler`), or a dispatcher's (`minyi dispatch`): only the
/// credentials given, and a home (and working directory) without a config file or
/// development credentials.
struct Shell {
    endpoint: String,
    token: Option<String>,
    home: tempfile::TempDir,
    dispatcher: bool,
}

impl Shell {
    fn new(c: &Cluster, unit: Option<&str>) -> Shell {
        Shell {
            endpoint: format!("http://{}", c.dispatch.grpc),
            token: unit.map(|u| c.dispatch.token_for(Role::Handler, Some(u))),
            home: tempfile::tempdir().unwrap(),
            dispatcher: false,
        }
    }

    fn dispatcher(c: &Cluster) -> Shell {
        Shell {
            token: Some(c.dispatch.token_for(Role::Dispatcher, None)),
            dispatcher: true,
            ..Shell::new(c, None)
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let (mut cmd, var) = if self.dispatcher {
            let mut cmd = Command::new(handler_bin().with_file_name("minyi"));
            cmd.arg("dispatch")
                .env("MINYI_ENDPOINT", &self.endpoint)
                .current_dir(self.home.path());
            (cmd, "MINYI_TOKEN")
        } else {
            let mut cmd = Command::new(handler_bin());
            cmd.env("MINYI_HANDLER_ENDPOINT", &self.endpoint);
            (cmd, "MINYI_HANDLER_TOKEN")
        };
        cmd.args(args)
            .env_remove("MINYI_HANDLER_TOKEN")
            .env_remove("MINYI_TOKEN")
            .env_remove("MINYI_HANDLER_CONFIG")
            .env_remove("RUST_BACKTRACE")
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(t) = &self.token {
            cmd.env(var, t);
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("minyi-handler {args:?} did not finish in 60 s"))
            .unwrap()
    }

    /// Runs `args`, asserts success and returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "minyi-handler {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args).await;
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Runs `args`, asserts it failed with exit code 1 and a clean one-line-led message;
    /// returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "minyi-handler {args:?}: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
        for noise in ["panicked", "RUST_BACKTRACE", "Status {", "stack backtrace"] {
            assert!(!stderr.contains(noise), "{noise} in {stderr}");
        }
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

fn territorial_text() -> String {
    let catalog = minyi_catalog::demo_slice();
    let item = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Territorial))
        .unwrap();
    item.phrasings.join("，")
}

/// Submits a territorial petition without an address (classification cannot place it, so it
/// waits for a dispatcher), then dispatches it by hand to ST-GM. Returns (id, tracking number).
async fn dispatched_to_gm(c: &Cluster, title: &str) -> (String, String) {
    let (id, tracking) = waiting_for_dispatcher(c, title).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dispatcher = c.dispatch.dispatch(Role::Dispatcher, None).await;
    loop {
        match dispatcher
            .dispatch(DispatchRequest {
                ticket: id.clone(),
                lead_unit: "ST-GM".into(),
                ..DispatchRequest::default()
            })
            .await
        {
            Ok(_) => break,
            // Dispatch has not consumed the routing event yet.
            Err(e) if e.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("manual dispatch failed: {e:?}"),
        }
    }
    (id, tracking)
}

/// Submits a territorial petition without an address, which waits for a dispatcher. Returns
/// (id, tracking number).
async fn waiting_for_dispatcher(c: &Cluster, title: &str) -> (String, String) {
    let mut agent = c.intake.intake(Some(Role::Agent)).await;
    let t = agent
        .submit_petition(SubmitPetitionRequest {
            channel: 1,
            title: title.into(),
            text: territorial_text(),
            location: Some(Location {
                address: String::new(),
                point: None,
            }),
            caller: Some(minyi_proto::common::Caller {
                anonymous: false,
                name: "王小明".into(),
                phone: "13800138000".into(),
                id_number: String::new(),
            }),
            ..SubmitPetitionRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = agent
            .get_ticket(GetTicketRequest { id: t.id.clone() })
            .await
            .unwrap()
            .into_inner();
        if now.status == TicketStatus::NeedsDispatcher.to_proto() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} never needed a dispatcher (status {})",
            t.id,
            now.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (t.id, t.tracking_number)
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn a_handler_works_a_ticket_from_the_command_line() {
    let c = spawn_cluster().await;
    let (id, tracking) = dispatched_to_gm(&c, "路灯不亮").await;
    let gm = Shell::new(&c, Some("ST-GM"));

    // The inbox lists it, as JSON and as a table.
    let inbox = gm.json(&["--json", "inbox"]).await;
    let tickets = inbox["tickets"].as_array().unwrap();
    let mine = tickets
        .iter()
        .find(|t| t["ticket_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {inbox}"));
    assert_eq!(mine["tracking_number"], tracking.as_str());
    assert_eq!(mine["state"], "dispatched");
    assert_eq!(mine["lead_unit"], "ST-GM");
    assert!(is_rfc3339(&mine["accept_by"]), "{mine}");
    assert!(is_rfc3339(&mine["complete_by"]), "{mine}");
    let filtered = gm.json(&["--json", "inbox", "--state", "accepted"]).await;
    assert_eq!(
        filtered["tickets"].as_array().unwrap().len(),
        0,
        "{filtered}"
    );
    let table = gm.ok(&["inbox", "--state", "dispatched"]).await;
    let row = table
        .lines()
        .find(|l| l.contains(&tracking))
        .unwrap_or_else(|| panic!("{tracking} not in\n{table}"));
    assert!(
        row.contains("dispatched") && row.contains("路灯不亮"),
        "{row}"
    );
    assert!(!table.contains('\x1b'), "colour on a pipe:\n{table}");

    // Another unit is told whose ticket it is, in one sentence.
    let xh = Shell::new(&c, Some("ST-XH"));
    let stderr = xh.fails(&["accept", &tracking]).await;
    assert!(stderr.contains("not to you"), "{stderr}");

    // 签收 by tracking number, then the details by id.
    let out = gm.ok(&["accept", &tracking]).await;
    assert!(
        out.starts_with(&format!("{tracking} accepted by ST-GM; complete by 20")),
        "{out}"
    );
    let shown = gm.json(&["--json", "show", &id]).await;
    assert_eq!(shown["state"], "accepted");
    assert!(is_rfc3339(&shown["accepted_at"]), "{shown}");
    assert_eq!(
        shown["caller"]["phone"], "138****8000",
        "masked for handlers"
    );
    let audit = shown["audit"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "accepted" && a["allowed"] == true),
        "{shown}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a["allowed"] == false && a["unit"] == "ST-XH"),
        "the stranger's refused accept is audited: {shown}"
    );
    let human = gm.ok(&["show", &tracking]).await;
    assert!(
        human.contains("[accepted]") && human.contains("audit trail:"),
        "{human}"
    );
    // The whole trail, a line each.
    let lines = gm.ok(&["--json", "audit", &tracking]).await;
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(Some(lines.len() as u64), shown["audit_total"].as_u64());
    assert_eq!(&lines, audit);
    let human = gm.ok(&["audit", &tracking]).await;
    assert!(
        human.contains("REFUSED") && human.contains("accepted  dispatched → accepted"),
        "{human}"
    );

    // A second accept is refused as a state problem, not a crash.
    let stderr = gm.fails(&["accept", &id]).await;
    assert!(stderr.contains("cannot do that now:"), "{stderr}");

    let out = gm
        .ok(&["progress", &id, "--note", "已联系路灯管理所，明日更换"])
        .await;
    assert!(out.contains("progress note recorded (1 so far)"), "{out}");
    // 补充材料: wait for the citizen, then go on.
    let out = gm.ok(&["pause", &id, "--reason", "请提供路灯编号"]).await;
    assert!(out.contains("completion clock is paused"), "{out}");
    let stderr = gm.fails(&["pause", &id, "--reason", "again"]).await;
    assert!(stderr.contains("already paused"), "{stderr}");
    let resumed = gm.json(&["--json", "resume", &id]).await;
    assert_eq!(resumed["paused"], false);
    assert!(is_rfc3339(&resumed["pauses"][0]["to"]), "{resumed}");
    let done = gm
        .json(&["--json", "complete", &id, "--reply", "路灯已修复，感谢反映"])
        .await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["reply"], "路灯已修复，感谢反映");
    assert_eq!(
        done["progress"][0]["text"], "已联系路灯管理所，明日更换",
        "{done}"
    );
    assert!(is_rfc3339(&done["completed_at"]), "{done}");

    // Bad fields are listed by name.
    let stderr = gm
        .fails(&["extend", &id, "--days", "3", "--reason", " "])
        .await;
    assert!(stderr.contains("reason"), "{stderr}");

    c.stop().await;
}

#[tokio::test]
async fn a_dispatcher_works_the_queue_from_the_command_line() {
    let c = spawn_cluster().await;
    let (id, tracking) = waiting_for_dispatcher(&c, "井盖缺失").await;
    let d = Shell::dispatcher(&c);

    // The queue, with the classifier's suggestions.
    let queue = d.json(&["--json", "queue"]).await;
    let waiting = queue["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["ticket_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {queue}"));
    let suggestions = waiting["routing"]["suggestions"].as_array().unwrap();
    assert!(!suggestions.is_empty(), "{waiting}");
    let table = d.ok(&["queue"]).await;
    let row = table
        .lines()
        .find(|l| l.contains(&tracking))
        .unwrap_or_else(|| panic!("{tracking} not in\n{table}"));
    assert!(row.contains("waiting") && row.contains("井盖缺失"), "{row}");
    let shown = d.ok(&["show", &tracking]).await;
    assert!(
        shown.contains("[needs_dispatcher]") && shown.contains("suggestion:   1. "),
        "{shown}"
    );

    // 派单: an unknown unit is named; then to ST-GM (once dispatch has the routing).
    let stderr = d.fails(&["send", &tracking, "--unit", "NOPE"]).await;
    assert!(stderr.contains("--unit: unknown unit NOPE"), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent = loop {
        let out = d
            .run(&["send", &tracking, "--unit", "ST-GM", "--note", "属地"])
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            stderr.contains("cannot do that now") && Instant::now() < deadline,
            "{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        sent.starts_with(&format!("{tracking} sent to 光明街道 (ST-GM) as ")),
        "{sent}"
    );

    // 延期: the unit asks, the dispatcher approves; nothing is left to decide after.
    let gm = Shell::new(&c, Some("ST-GM"));
    gm.ok(&["accept", &id]).await;
    gm.ok(&["extend", &id, "--days", "2", "--reason", "需协调管线单位"])
        .await;
    let out = d
        .ok(&["extension", &tracking, "--approve", "--note", "同意"])
        .await;
    assert!(out.contains("extension approved; complete by 20"), "{out}");
    let stderr = d.fails(&["extension", &tracking, "--refuse"]).await;
    assert!(stderr.contains("cannot do that now"), "{stderr}");

    // 回访: dissatisfied on the unit's side reopens it; satisfied closes; then 归档.
    gm.ok(&["complete", &id, "--reply", "井盖已补装"]).await;
    let out = d
        .ok(&[
            "callback",
            &tracking,
            "--rating",
            "dissatisfied",
            "--cause",
            "unit",
        ])
        .await;
    assert!(
        out.contains("reopened for 光明街道 (ST-GM) to redo"),
        "{out}"
    );
    gm.ok(&["complete", &id, "--reply", "井盖已更换为防盗井盖"])
        .await;
    let out = d
        .ok(&["callback", &tracking, "--rating", "satisfied"])
        .await;
    assert!(out.contains("callback recorded"), "{out}");
    let archived = d.json(&["--json", "archive", &tracking]).await;
    assert_eq!(archived["state"], "archived", "{archived}");
    let trail = d.ok(&["--json", "audit", &tracking]).await;
    let last: Value = serde_json::from_str(trail.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "archived", "{trail}");
    let actions: Vec<String> = trail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].to_string())
        .collect();
    assert!(actions.contains(&"\"reopened\"".to_owned()), "{actions:?}");

    // Usage errors are clap's: --unit or --next, a rating from the list.
    let out = d.run(&["send", &tracking]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = d.run(&["callback", &tracking, "--rating", "bad"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("basically_satisfied"),
        "{out:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn credentials_usage_and_connection_errors_are_plain_sentences() {
    let c = spawn_cluster().await;
    let (id, _) = dispatched_to_gm(&c, "井盖缺失").await;

    // Usage errors are clap's: exit code 2, the missing flags named.
    let gm = Shell::new(&c, Some("ST-GM"));
    let out = gm.run(&["return", &id]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--reason") && stderr.contains("--rule"),
        "{stderr}"
    );

    // No token anywhere: how to get one.
    let nobody = Shell::new(&c, None);
    let stderr = nobody.fails(&["inbox"]).await;
    assert!(
        stderr.contains("MINYI_HANDLER_TOKEN") && stderr.contains("credentials.json"),
        "{stderr}"
    );

    // The token from the config file; a flag beats the environment.
    let config = nobody.home.path().join("handler.toml");
    write_config(&config, &gm.endpoint, gm.token.as_deref().unwrap());
    let inbox = nobody
        .json(&["--json", "--config", config.to_str().unwrap(), "inbox"])
        .await;
    assert_eq!(inbox["tickets"][0]["ticket_id"], id.as_str(), "{inbox}");
    let default_config = nobody.home.path().join(".config/minyi/handler.toml");
    std::fs::create_dir_all(default_config.parent().unwrap()).unwrap();
    write_config(&default_config, &gm.endpoint, gm.token.as_deref().unwrap());
    nobody.json(&["--json", "inbox"]).await;
    let stderr = gm
        .fails(&["--token", "not-a-token", "--json", "inbox"])
        .await;
    assert!(
        stderr.contains("your token was refused (expired or wrong)"),
        "{stderr}"
    );

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let stderr = gm
        .fails(&["--endpoint", &format!("http://127.0.0.1:{port}"), "inbox"])
        .await;
    assert!(
        stderr.contains(&format!("cannot reach Minyi at http://127.0.0.1:{port}")),
        "{stderr}"
    );
    c.stop().await;
}

fn write_config(path: &Path, endpoint: &str, token: &str) {
    std::fs::write(
        path,
        format!("endpoint = \"{endpoint}\"\ntoken = \"{token}\"\n"),
    )
    .unwrap();
}

/// The next stdout line of `watch --json` that is about `id`, within 30 s.
async fn entry_for(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    id: &str,
    seen: &mut Vec<Value>,
) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let Some(line) = lines.next_line().await.unwrap() else {
                panic!("watch ended without an entry for {id}; saw {seen:?}");
            };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            seen.push(v.clone());
            if v["ticket_id"] == id {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no inbox entry for {id} within 30 s; saw {seen:?}"))
}

#[tokio::test]
async fn watch_prints_new_work_as_it_arrives_and_survives_a_restart() {
    let c = spawn_cluster().await;
    let gm = Shell::new(&c, Some("ST-GM"));
    // Watching before the ticket exists: the entry must arrive over the open stream.
    let mut child = gm
        .command(&["watch", "--json", "--from", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let (id, tracking) = dispatched_to_gm(&c, "噪音扰民").await;
    let entry = entry_for(&mut lines, &id, &mut seen).await;
    assert_eq!(entry["tracking_number"], tracking.as_str());
    assert_eq!(entry["kind"], "dispatched");
    assert_eq!(entry["title"], "噪音扰民");
    assert!(entry["cursor"].as_i64().unwrap() > 0, "{entry}");
    assert!(
        is_rfc3339(&entry["at"]) && is_rfc3339(&entry["accept_by"]),
        "{entry}"
    );

    // The dispatch service goes away: watch says so on stderr and keeps trying.
    let Cluster {
        intake,
        classification,
        dispatch,
    } = c;
    let (grpc, config) = (dispatch.grpc, dispatch.config.clone());
    dispatch.stop().await;
    let notice = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
        .await
        .expect("no reconnect notice within 30 s")
        .unwrap()
        .expect("stderr closed");
    assert!(notice.contains("reconnecting"), "{notice}");
    assert!(!notice.contains("panicked"), "{notice}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "watch gave up: {notice}"
    );

    // It comes back on the same address: the stream resumes after the last cursor.
    let catalog = tempfile::tempdir().unwrap();
    support::small_catalog(catalog.path());
    let dispatch = support::spawn_with(
        minyi::config::Config {
            grpc_addr: grpc,
            http_addr: "127.0.0.1:0".parse().unwrap(),
            catalog_dir: Some(catalog.path().to_owned()),
            ..config
        },
        minyi::app::Mode::Production(vec![minyi::app::Service::Dispatch]),
        Some(catalog),
    )
    .await;
    let c = Cluster {
        intake,
        classification,
        dispatch,
    };
    let (id2, _) = dispatched_to_gm(&c, "占道经营").await;
    entry_for(&mut lines, &id2, &mut seen).await;
    assert_eq!(
        seen.iter()
            .filter(|e| e["ticket_id"] == id.as_str())
            .count(),
        1,
        "the first entry was repeated after reconnecting: {seen:?}"
    );
    assert!(child.try_wait().unwrap().is_none());
    child.kill().await.unwrap();
    c.stop().await;
}
