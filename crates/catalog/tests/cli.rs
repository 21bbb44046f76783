//! `minyi catalog …` through `cli::run`, as the `minyi` binary calls it.

use clap::Parser;
use minyi_catalog::cli::{CatalogArgs, run};
use minyi_catalog::{CatalogDir, CatalogError};

/// Stand-in for the `minyi` binary: `minyi catalog <subcommand>`.
#[derive(Parser)]
#[command(name = "minyi", version)]
struct Minyi {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    Catalog(CatalogArgs),
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn minyi(args: &[&str]) -> (Result<(), CatalogError>, String) {
    let mut argv = vec!["minyi", "catalog"];
    argv.extend_from_slice(args);
    let Cmd::Catalog(a) = Minyi::try_parse_from(argv).expect("args parse").cmd;
    let mut out = Vec::new();
    let r = run(&a, &mut out);
    (r, String::from_utf8(out).expect("utf8"))
}

#[test]
fn clap_definition_is_valid() {
    use clap::CommandFactory;
    Minyi::command().debug_assert();
}

#[test]
fn demo_import_export_diff_list() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| tmp.path().join(n).display().to_string();
    let dir = p("store");

    let (r, out) = minyi(&["demo", "--out", &p("demo.csv")]);
    r.expect("demo");
    assert!(out.contains("3469 items"), "{out}");
    let (r, _) = minyi(&["demo", "--out", &p("demo.json"), "--format", "json"]);
    r.expect("demo json");

    let (r, out) = minyi(&["validate", &p("demo.csv")]);
    r.expect("valid");
    assert!(out.starts_with("ok: 3469 items"), "{out}");

    let (r, out) = minyi(&["import", &p("demo.csv"), "--dir", &dir, "--activate"]);
    r.expect("import");
    assert!(out.contains("as v1") && out.contains("active"), "{out}");
    let (r, out) = minyi(&["import", &p("demo.json"), "--dir", &dir]);
    r.expect("import json");
    assert!(out.contains("as v2"), "{out}");

    let (r, out) = minyi(&["list", "--dir", &dir]);
    r.expect("list");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("* v1"), "{out}");
    assert!(lines[1].starts_with("  v2"), "{out}");
    // Same content through CSV and JSON: same hash.
    assert_eq!(
        lines[0].split("sha256").nth(1),
        lines[1].split("sha256").nth(1)
    );

    let (r, out) = minyi(&["diff", "v1", "v2", "--dir", &dir]);
    r.expect("diff");
    assert_eq!(out, "0 added, 0 removed, 0 changed\n");

    // Activation, by label or number; an unknown version changes nothing.
    let (r, out) = minyi(&["activate", "2", "--dir", &dir]);
    r.expect("activate");
    assert!(out.starts_with("v2 is active (3469 items)"), "{out}");
    let (r, _) = minyi(&["activate", "v9", "--dir", &dir]);
    assert!(matches!(r, Err(CatalogError::UnknownVersion(v)) if v == "v9"));
    let (r, _) = minyi(&["activate", "v1", "--dir", &dir]);
    r.expect("activate v1 again");

    let (r, out) = minyi(&["export", "--dir", &dir, "--format", "yaml"]);
    r.expect("export stdout");
    assert!(out.starts_with("version: v1\n"), "{}", &out[..40]);
    let (r, _) = minyi(&[
        "export",
        "--dir",
        &dir,
        "--version",
        "v2",
        "--out",
        &p("v2.csv"),
    ]);
    r.expect("export file");
    let csv = std::fs::read_to_string(p("v2.csv")).expect("csv");
    // A byte-order mark for Excel, which import and diff skip.
    assert!(csv.starts_with("\u{feff}code,path,name,"));

    // Edit the exported CSV and diff file against version.
    let edited = csv.replacen(",normal,4,24,10,", ",normal,4,24,12,", 1);
    std::fs::write(p("edited.csv"), edited).expect("write");
    let (r, out) = minyi(&["diff", "v2", &p("edited.csv"), "--dir", &dir]);
    r.expect("diff file");
    assert!(out.starts_with("0 added, 0 removed, 1 changed\n"), "{out}");
    assert!(out.contains(": limits.complete_days\n"), "{out}");

    let (r, out) = minyi(&["history", "--out", &p("history.csv"), "--per-item", "2"]);
    r.expect("history");
    assert!(out.contains("6938 texts"), "{out}");

    assert_eq!(
        CatalogDir::open(&dir)
            .expect("dir")
            .active()
            .expect("active")
            .len(),
        3469
    );
}

#[test]
fn validate_prints_every_problem_and_fails() {
    let file = format!("{FIXTURES}/bad.csv");
    let (r, out) = minyi(&["validate", &file]);
    let err = r.expect_err("invalid");
    assert!(
        err.to_string()
            .starts_with("8 problems, first: line 3: code:")
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines.contains(&"line 8: grade: invalid grade \"超急\" (expected urgent or normal)"));
    assert!(lines.contains(&"line 5: accept_hours: missing"));

    let (r, out) = minyi(&["validate", &format!("{FIXTURES}/bad.json")]);
    assert!(r.is_err());
    assert!(out.lines().all(|l| l.starts_with("line ")), "{out}");

    // With a three-unit directory, the CSV's DEP-CG rows still pass but nothing else does.
    let (r, out) = minyi(&[
        "validate",
        &file,
        "--units",
        &format!("{FIXTURES}/units.csv"),
    ]);
    assert!(r.is_err());
    assert!(
        out.contains("line 4: unit: unknown unit \"DEP-XX\""),
        "{out}"
    );
}

#[test]
fn import_of_invalid_file_stores_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().display().to_string();
    let (r, _) = minyi(&["import", &format!("{FIXTURES}/bad.yaml"), "--dir", &dir]);
    let msg = r.expect_err("invalid").to_string();
    assert!(!msg.contains('\n'));
    assert!(
        msg.starts_with("4 problems, first: items[1]: grade:"),
        "{msg}"
    );
    let (r, out) = minyi(&["list", "--dir", &dir]);
    r.expect("list");
    assert!(out.starts_with("no versions"), "{out}");
    let (r, _) = minyi(&["export", "--dir", &dir]);
    assert!(matches!(r, Err(CatalogError::NoActiveVersion(_))));
    let (r, _) = minyi(&["validate", "missing.txt"]);
    assert!(matches!(r, Err(CatalogError::Format(_))));
}

/// Excel on a Chinese Windows saves "CSV" in GBK: such a file is read (as GB18030, which
/// includes GBK); a JSON file with a byte-order mark is read; a file in neither encoding is
/// refused, naming the line of its first bad byte.
#[test]
fn gbk_and_byte_order_marks_are_read_and_unknown_encodings_refused() {
    use minyi_catalog::format::{Format, write};
    let tmp = tempfile::tempdir().expect("tempdir");
    let slice = minyi_catalog::demo_slice();
    let csv = write(&slice, Format::Csv).expect("csv");
    let gbk = tmp.path().join("gbk.csv");
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(&csv);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture is not UTF-8"
    );
    std::fs::write(&gbk, &bytes).expect("write");
    let (r, out) = minyi(&["validate", &gbk.display().to_string()]);
    r.expect("a GBK file is read");
    assert!(
        out.starts_with(&format!("ok: {} items", slice.len())),
        "{out}"
    );

    let json = tmp.path().join("bom.json");
    let mut with_bom = "\u{feff}".to_owned();
    with_bom.push_str(&write(&slice, Format::Json).expect("json"));
    std::fs::write(&json, with_bom).expect("write");
    let (r, _) = minyi(&["validate", &json.display().to_string()]);
    r.expect("a byte-order mark is skipped");

    let broken = tmp.path().join("broken.csv");
    let mut bytes = csv.into_bytes();
    let third_line = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("three lines");
    bytes.insert(third_line, 0xFF);
    std::fs::write(&broken, bytes).expect("write");
    let (r, _) = minyi(&["validate", &broken.display().to_string()]);
    let err = r.expect_err("neither encoding").to_string();
    assert!(err.contains("line 3: neither UTF-8 nor GB18030"), "{err}");

    // UTF-8 with one stray byte that happens to decode as GB18030 (its Chinese in pairs of
    // characters, the stray byte before a letter): refused, not read as nonsense.
    let stray = tmp.path().join("stray.csv");
    let mut bytes = "code,name\nA1,中文\n".as_bytes().to_vec();
    bytes.push(0x81);
    bytes.extend_from_slice("B2,中文\n".as_bytes());
    assert!(
        encoding_rs::GB18030
            .decode_without_bom_handling_and_without_replacement(&bytes)
            .is_some(),
        "the fixture decodes as GB18030"
    );
    std::fs::write(&stray, bytes).expect("write");
    let err = minyi_catalog::cli::read_text(&stray)
        .expect_err("UTF-8 with a stray byte")
        .to_string();
    assert!(err.contains("line 3: neither UTF-8 nor GB18030"), "{err}");
}
