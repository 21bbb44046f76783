//! The command-line contracts that outside tools call, run through the real `minyi` binary.

use std::path::PathBuf;
use std::process::Command;

fn minyi() -> Command {
    let bin = std::env::var("MINYI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("debug/minyi")
        });
    assert!(
        bin.exists(),
        "{} missing: `cargo build -p minyi --bins`",
        bin.display()
    );
    Command::new(bin)
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn classify_eval_prints_the_json_contract_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,text,label\n");
    let rows = [
        ("小区门口垃圾堆积没人清理", "城乡建设"),
        ("楼道里垃圾很多，物业不管", "城乡建设"),
        ("垃圾站臭气熏天，\"请处理\"", "城乡建设"),
        ("小区路灯坏了，晚上很黑", "城乡建设"),
        ("公交车经常不准点", "交通运输"),
        ("地铁早高峰太挤，建议加车", "交通运输"),
        ("公交站牌被撞坏了", "交通运输"),
        ("出租车拒载，司机态度差", "交通运输"),
    ];
    for (i, (text, label)) in rows.iter().cycle().take(32).enumerate() {
        csv.push_str(&format!(
            "{i},\"{}\n第{i}条\",{label}\n",
            text.replace('"', "\"\"")
        ));
    }
    let path = dir.path().join("data.csv");
    std::fs::write(&path, csv).unwrap();
    let out = stdout(
        minyi()
            .args(["classify", "eval", "--train"])
            .arg(&path)
            .arg("--test")
            .arg(&path),
    );
    let last: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    for key in [
        "accuracy",
        "macro_f1",
        "auto_threshold",
        "auto_coverage",
        "auto_precision",
        "train_seconds",
        "p50_us",
        "p99_us",
    ] {
        assert!(last.get(key).is_some(), "missing {key} in {last}");
    }
    assert!(last["accuracy"].as_f64().unwrap() > 0.9);
    let err = minyi()
        .args(["classify", "eval", "--train", "/nonexistent.csv", "--test"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("nonexistent"));
}

#[test]
fn calendar_commands_answer_as_documented() {
    assert_eq!(
        stdout(minyi().args(["calendar", "is-working", "2026-02-14"])).trim(),
        "true"
    );
    assert_eq!(
        stdout(minyi().args(["calendar", "is-working", "2026-10-05"])).trim(),
        "false"
    );
    assert_eq!(
        stdout(minyi().args([
            "calendar",
            "add",
            "2026-09-30T10:00:00+08:00",
            "--days",
            "1"
        ]))
        .trim(),
        "2026-10-08T10:00:00+08:00"
    );
    let out = minyi()
        .args(["calendar", "is-working", "2031-01-02"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "years outside the calendar are refused"
    );
}

/// The Kubernetes migration Job's command: migrates a fresh database, touches no broker or
/// Redis (none configured here), exits 0, and is idempotent.
#[tokio::test]
async fn serve_migrate_only_migrates_and_exits() {
    use sqlx::Connection;
    let url = minyi_core::testing::fresh_database().await.unwrap();
    for _ in 0..2 {
        let out = tokio::process::Command::from(minyi())
            .args(["serve", "intake", "--migrate-only"])
            .env("MINYI_DATABASE_URL", &url)
            .env_remove("MINYI_AMQP_URL")
            .env_remove("MINYI_REDIS_URL")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("schema is at version 2026"), "{said}");
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tickets, 0);
    let out = tokio::process::Command::from(minyi())
        .args(["serve", "intake", "--migrate-only"])
        .env_remove("MINYI_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url is not set"));
}

/// `minyi serve` with only the given `MINYI_*` variables (and no configuration file).
fn serve_intake(env: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let mut cmd = minyi();
    for (k, _) in std::env::vars() {
        if k.starts_with("MINYI_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["serve", "intake"])
        .args(extra)
        .envs(env.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn serve_refuses_plaintext_beyond_loopback_naming_the_settings() {
    let out = serve_intake(
        &[
            ("MINYI_GRPC_ADDR", "0.0.0.0:0"),
            ("MINYI_HTTP_ADDR", "127.0.0.1:0"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("grpc_addr = 0.0.0.0:0"), "{stderr}");
    assert!(
        stderr.contains("MINYI_TLS_CERT_FILE") && stderr.contains("MINYI_TLS_ALLOW_PLAINTEXT"),
        "{stderr}"
    );

    // The TLS variables reach the `[tls]` settings: a missing certificate is named.
    let out = serve_intake(
        &[
            ("MINYI_GRPC_ADDR", "0.0.0.0:0"),
            ("MINYI_TLS_CERT_FILE", "/nonexistent/tls.crt"),
            ("MINYI_TLS_KEY_FILE", "/nonexistent/tls.key"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tls.cert_file /nonexistent/tls.crt"),
        "{stderr}"
    );

    // --dump-config shows them as the `[tls]` table.
    let dump = stdout(
        minyi()
            .args(["serve", "intake", "--dump-config"])
            .env("MINYI_TLS_ALLOW_PLAINTEXT", "true")
            .env("MINYI_HEALTH_ADDR", "0.0.0.0:8081"),
    );
    let (top, table) = dump.split_once("\n[tls]\n").expect(&dump);
    assert!(top.contains("health_addr = \"0.0.0.0:8081\""), "{dump}");
    assert!(table.contains("allow_plaintext = true"), "{dump}");
    assert!(table.contains("# cert_file = (unset)"), "{dump}");
}

/// `minyi catalog … --database-url` (or `MINYI_DATABASE_URL`, as set in the services' pods)
/// works on the production catalog: import, list, export, diff, activate; a `--dir` given
/// wins; an unreachable database is one clear line.
#[tokio::test]
async fn catalog_commands_work_on_the_database() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    // A database no service has migrated: the command line changes no schema, and says so.
    let out = minyi()
        .args(["catalog", "list", "--database-url", &url])
        .env_remove("MINYI_CATALOG_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("migrate it first"), "{err}");
    minyi_core::store::PgCatalogStore::connect(&url)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.json");
    let small = minyi_catalog::demo_slice();
    std::fs::write(
        &file,
        minyi_catalog::format::write(&small, minyi_catalog::format::Format::Json).unwrap(),
    )
    .unwrap();
    let catalog = |args: &[&str]| {
        let mut cmd = minyi();
        cmd.arg("catalog")
            .args(args)
            .env("MINYI_DATABASE_URL", &url)
            .env_remove("MINYI_CATALOG_DIR");
        cmd
    };
    let said = stdout(&mut catalog(&[
        "import",
        file.to_str().unwrap(),
        "--activate",
    ]));
    assert!(said.contains("as v1") && said.contains("active"), "{said}");
    let said = stdout(&mut catalog(&["import", file.to_str().unwrap()]));
    assert!(said.contains("as v2"), "{said}");
    let said = stdout(&mut catalog(&["list"]));
    assert!(said.contains("* v1") && said.contains("  v2"), "{said}");
    let said = stdout(&mut catalog(&["activate", "v2"]));
    assert!(said.starts_with("v2 is active"), "{said}");
    stdout(&mut catalog(&["diff", "v1", "v2"]));
    let exported = stdout(&mut catalog(&["export", "--format", "csv"]));
    assert!(exported.starts_with("code,path,name,"), "{exported}");
    assert_eq!(exported.lines().count(), small.len() + 1);

    // The services see it: one database, one catalog.
    use minyi_core::store::CatalogStore;
    let store = minyi_core::store::PgCatalogStore::connect(&url)
        .await
        .unwrap();
    assert_eq!(store.active_version().await.unwrap().as_deref(), Some("v2"));

    // An explicit directory wins over the database in the environment.
    let local = dir.path().join("catalog");
    let said = stdout(catalog(&["list", "--dir"]).arg(&local));
    assert!(said.starts_with("no versions in"), "{said}");

    // A database that cannot be reached: one line naming it, exit 2.
    let out = minyi()
        .args(["catalog", "list", "--database-url"])
        .arg("postgres://postgres@127.0.0.1:1/none?connect_timeout=2")
        .env_remove("MINYI_CATALOG_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: catalog store:") && err.lines().count() == 1,
        "{err}"
    );
}

/// Without `--dir` or a database, `minyi catalog` works on the catalog `make run` keeps
/// (`data/dev/catalog`), not on a directory no service reads.
#[test]
fn catalog_commands_default_to_the_catalog_of_make_run() {
    let cwd = tempfile::tempdir().unwrap();
    let file = cwd.path().join("small.json");
    std::fs::write(
        &file,
        minyi_catalog::format::write(
            &minyi_catalog::demo_slice(),
            minyi_catalog::format::Format::Json,
        )
        .unwrap(),
    )
    .unwrap();
    let said = stdout(
        minyi()
            .args(["catalog", "import", "small.json", "--activate"])
            .current_dir(cwd.path())
            .env_remove("MINYI_CATALOG_DIR")
            .env_remove("MINYI_DATABASE_URL"),
    );
    assert!(said.contains("as v1"), "{said}");
    assert!(cwd.path().join("data/dev/catalog/v1.json").exists());
}
