//! Compares holiday files (holiday-cn JSON format) with the built-in table, day by day.
//!
//! ```text
//! cargo run -p minyi-calendar --example compare_year -- 2025.json 2026.json
//! ```
//!
//! Prints each difference and exits with status 1 if there is any. Use it to check a
//! transcription of a new State Council notice against a second source before release.

use std::collections::BTreeSet;
use std::process::ExitCode;

use minyi_calendar::{Calendar, YearData};

fn main() -> ExitCode {
    let builtin = Calendar::china();
    let mut identical = true;
    for path in std::env::args().skip(1) {
        let mut file = Calendar::empty();
        let year = match file.load_year_file(&path) {
            Ok(year) => year,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let (Some(theirs), Some(ours)) = (file.year(year), builtin.year(year)) else {
            println!("{path}: {year} is not built in");
            identical = false;
            continue;
        };
        let differences = differences(ours, theirs);
        if differences.is_empty() {
            println!("{path}: {year} identical ({} days)", ours.days().count());
        } else {
            identical = false;
            println!("{path}: {year} differs:");
            for line in differences {
                println!("  {line}");
            }
        }
    }
    if identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn differences(ours: &YearData, theirs: &YearData) -> Vec<String> {
    let dates: BTreeSet<_> = ours
        .days()
        .chain(theirs.days())
        .map(|(date, _)| date)
        .collect();
    let describe = |data: &YearData, date| match data.get(date) {
        Some(day) if day.is_off_day => format!("off ({})", day.name),
        Some(day) => format!("make-up working day ({})", day.name),
        None => "not listed".to_owned(),
    };
    dates
        .into_iter()
        .filter(|date| ours.get(*date) != theirs.get(*date))
        .map(|date| {
            format!(
                "{date}: built in {}, file {}",
                describe(ours, date),
                describe(theirs, date)
            )
        })
        .collect()
}
