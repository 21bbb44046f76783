//! `minyi calendar` through clap, as the `minyi` binary mounts it.

use clap::{CommandFactory, Parser};
use minyi_calendar::CalendarError;
use minyi_calendar::cli::{CalendarArgs, run};

#[derive(Parser)]
#[command(name = "minyi")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Calendar(CalendarArgs),
}

fn parse(args: &[&str]) -> Result<CalendarArgs, clap::Error> {
    let cli = Cli::try_parse_from(["minyi", "calendar"].iter().chain(args))?;
    let Command::Calendar(args) = cli.command;
    Ok(args)
}

fn calendar(args: &[&str]) -> Result<String, CalendarError> {
    let args = parse(args).unwrap();
    let mut out = Vec::new();
    run(&args, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn error(args: &[&str]) -> String {
    calendar(args).unwrap_err().to_string()
}

#[test]
fn the_command_line_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn is_working_answers_for_dates() {
    assert_eq!(
        calendar(&["is-working", "2026-02-14"]).unwrap(),
        "true\n",
        "make-up Saturday"
    );
    assert_eq!(
        calendar(&["is-working", "2026-02-16"]).unwrap(),
        "false\n",
        "Spring Festival"
    );
    assert_eq!(calendar(&["is-working", "2026-03-02"]).unwrap(), "true\n");
    assert_eq!(
        calendar(&["is-working", "2026-03-07"]).unwrap(),
        "false\n",
        "plain Saturday"
    );
    assert_eq!(
        calendar(&["is-working", "2025-09-28"]).unwrap(),
        "true\n",
        "make-up Sunday"
    );
}

#[test]
fn is_working_answers_working_time_for_instants() {
    assert_eq!(
        calendar(&["is-working", "2026-02-14T10:00:00+08:00"]).unwrap(),
        "true\n"
    );
    assert_eq!(
        calendar(&["is-working", "2026-02-14T13:00"]).unwrap(),
        "false\n",
        "lunch"
    );
    assert_eq!(
        calendar(&["is-working", "2026-03-02 18:00"]).unwrap(),
        "false\n",
        "closing time"
    );
    assert_eq!(
        calendar(&["is-working", "2026-03-02T01:30:00Z"]).unwrap(),
        "true\n",
        "09:30 in Shanghai"
    );
}

#[test]
fn add_days_keeps_the_time_of_day() {
    assert_eq!(
        calendar(&["add", "2026-02-13T10:00:00+08:00", "--days", "2"]).unwrap(),
        "2026-02-24T10:00:00+08:00\n"
    );
    assert_eq!(
        calendar(&["add", "2026-09-30T07:00:00Z", "--days", "1"]).unwrap(),
        "2026-10-08T15:00:00+08:00\n"
    );
    assert_eq!(
        calendar(&["add", "2026-09-19 08:00", "--days", "0"]).unwrap(),
        "2026-09-20T08:00:00+08:00\n",
        "zero days from a day off rolls forward"
    );
}

#[test]
fn add_hours_counts_working_hours_only() {
    assert_eq!(
        calendar(&["add", "2026-02-14T17:00", "--hours", "2"]).unwrap(),
        "2026-02-24T10:00:00+08:00\n"
    );
    assert_eq!(
        calendar(&["add", "2026-03-06T11:00:00+08:00", "--hours", "1.5"]).unwrap(),
        "2026-03-06T14:30:00+08:00\n"
    );
    assert_eq!(
        calendar(&["add", "2026-03-06T11:00:00.5+08:00", "--hours", "0"]).unwrap(),
        "2026-03-06T11:00:00.500+08:00\n"
    );
}

#[test]
fn between_prints_working_hours() {
    assert_eq!(
        calendar(&["between", "2026-09-30T09:00", "2026-10-08T14:30"]).unwrap(),
        "10.5\n"
    );
    assert_eq!(
        calendar(&["between", "2026-09-30T09:00", "2026-10-08T12:00"]).unwrap(),
        "10\n"
    );
    assert_eq!(
        calendar(&["between", "2026-10-08T14:30", "2026-09-30T09:00"]).unwrap(),
        "-10.5\n"
    );
    assert_eq!(
        calendar(&["between", "2026-03-07T09:00", "2026-03-08T18:00"]).unwrap(),
        "0\n"
    );
}

#[test]
fn between_json() {
    let out = calendar(&[
        "between",
        "2026-09-30T01:00:00Z",
        "2026-10-08 14:30",
        "--json",
    ])
    .unwrap();
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "from": "2026-09-30T09:00:00+08:00",
            "to": "2026-10-08T14:30:00+08:00",
            "working_hours": 10.5,
            "working_seconds": 37800,
        })
    );
}

#[test]
fn working_hours_option_before_or_after_the_command() {
    let hours = "08:30-12:00,13:30-17:30";
    let expected = "2026-03-06T14:30:00+08:00\n";
    assert_eq!(
        calendar(&[
            "--working-hours",
            hours,
            "add",
            "2026-03-06T12:00",
            "--hours",
            "1"
        ])
        .unwrap(),
        expected
    );
    assert_eq!(
        calendar(&[
            "add",
            "2026-03-06T12:00",
            "--hours",
            "1",
            "--working-hours",
            hours
        ])
        .unwrap(),
        expected
    );
    assert_eq!(
        calendar(&[
            "--working-hours",
            "09:00-17:00",
            "between",
            "2026-03-06T08:00",
            "2026-03-06T20:00"
        ])
        .unwrap(),
        "8\n"
    );
}

#[test]
fn calendar_files_add_years() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2027.json");
    std::fs::write(
        &path,
        r#"{"year": 2027, "papers": [], "days": [
            {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
            {"name": "春节", "date": "2027-01-02", "isOffDay": false}]}"#,
    )
    .unwrap();
    let path = path.to_str().unwrap();
    assert_eq!(
        calendar(&[
            "--calendar-file",
            path,
            "add",
            "2026-12-31T10:00",
            "--days",
            "1"
        ])
        .unwrap(),
        "2027-01-02T10:00:00+08:00\n"
    );
    assert_eq!(
        calendar(&["is-working", "2027-01-01", "--calendar-file", path]).unwrap(),
        "false\n"
    );
}

#[test]
fn out_of_range_dates_are_refused() {
    assert_eq!(
        error(&["is-working", "2027-03-01"]),
        "2027-03-01 is outside the loaded calendar years (2025-2026); load that year's holiday data"
    );
    assert_eq!(
        error(&["add", "2026-12-30T10:00", "--days", "5"]),
        "2027-01-01 is outside the loaded calendar years (2025-2026); load that year's holiday data"
    );
    assert!(
        error(&["between", "2024-12-31T10:00", "2025-01-02T10:00"])
            .starts_with("2024-12-31 is outside")
    );
}

#[test]
fn bad_arguments_are_named() {
    assert!(
        error(&["add", "tomorrow", "--days", "1"])
            .starts_with("invalid INSTANT `tomorrow`: expected")
    );
    assert!(
        error(&["add", "2026-03-02", "--days", "1"]).starts_with("invalid INSTANT `2026-03-02`")
    );
    assert_eq!(
        error(&["add", "2026-03-02T09:00", "--days", "-1"]),
        "invalid --days `-1`: expected a whole number of working days, 0 or more"
    );
    assert!(
        error(&["add", "2026-03-02T09:00", "--hours", "-2"]).starts_with("invalid --hours `-2`")
    );
    assert!(
        error(&["is-working", "2026-13-01"])
            .starts_with("invalid DATE `2026-13-01`: expected YYYY-MM-DD")
    );
    assert!(error(&["between", "2026-03-02T09:00", "noon"]).starts_with("invalid B `noon`"));
    assert!(error(&["between", "x", "2026-03-02T09:00"]).starts_with("invalid A `x`"));
    assert_eq!(
        error(&["--working-hours", "9-5", "is-working", "2026-03-02"]),
        "invalid --working-hours `9-5`: `9` is not a time of day (HH:MM)"
    );
    assert!(
        error(&[
            "--calendar-file",
            "/nonexistent/2027.json",
            "is-working",
            "2026-03-02"
        ])
        .starts_with("cannot read holiday file `/nonexistent/2027.json`: ")
    );
    for message in [
        error(&["add", "x", "--days", "1"]),
        error(&["--working-hours", "", "is-working", "2026-03-02"]),
    ] {
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn add_needs_exactly_one_amount() {
    assert!(parse(&["add", "2026-03-02T09:00"]).is_err());
    assert!(parse(&["add", "2026-03-02T09:00", "--days", "1", "--hours", "1"]).is_err());
}
