//! Holiday data: one [`YearData`] per year, from the built-in table or from a JSON file.
//!
//! The JSON format is that of the `holiday-cn` project, one file per year:
//!
//! ```json
//! {"year": 2026, "papers": ["<notice URL>"],
//!  "days": [{"name": "春节", "date": "2026-02-14", "isOffDay": false}, ...]}
//! ```
//!
//! Only exceptions are listed: days off (`isOffDay: true`, whole holiday spans, weekends
//! included) and make-up working days (`isOffDay: false`, normally a weekend day, 调休).
//! Every other date is a working day from Monday to Friday and a day off at the weekend.
//! A span crossing New Year may list a date of the adjacent year (the 2023 file lists
//! 2022-12-31); such a date still needs its own year loaded before it is classified.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use crate::CalendarError;

/// Years the calendar accepts. Asia/Shanghai has been a fixed UTC+08:00 without daylight
/// saving since 1992, which the calendar's arithmetic relies on.
pub const SUPPORTED_YEARS: std::ops::RangeInclusive<i32> = 1992..=9999;

/// One listed exception day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialDay {
    /// The festival it belongs to, e.g. `春节`.
    pub name: String,
    /// `true` for a day off, `false` for a make-up working day (调休).
    pub is_off_day: bool,
}

/// The holiday arrangement of one year: its exception days and the notices they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearData {
    year: i32,
    papers: Vec<String>,
    days: BTreeMap<NaiveDate, SpecialDay>,
}

impl YearData {
    /// Parses and validates one year in the JSON format described in the module docs.
    ///
    /// `origin` names the source in error messages (a path, or `JSON input`).
    /// Rejected: malformed JSON, a year outside [`SUPPORTED_YEARS`], an empty `days` list
    /// (a year without data is not a loaded year), a date listed twice, and a date that is
    /// neither in that year nor in an adjacent one.
    pub fn from_json(json: &str, origin: &str) -> Result<Self, CalendarError> {
        let invalid = |reason: String| CalendarError::InvalidYearData {
            origin: origin.to_owned(),
            reason,
        };
        let file: YearFile = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let year = file.year;
        if !SUPPORTED_YEARS.contains(&year) {
            return Err(invalid(format!(
                "year {year} is outside {}-{} (Asia/Shanghai is fixed UTC+08:00 only since 1992)",
                SUPPORTED_YEARS.start(),
                SUPPORTED_YEARS.end()
            )));
        }
        if file.days.is_empty() {
            return Err(invalid(format!("year {year} lists no days")));
        }
        let mut days = BTreeMap::new();
        for entry in file.days {
            if (entry.date.year() - year).abs() > 1 {
                return Err(invalid(format!(
                    "{} does not belong to year {year}",
                    entry.date
                )));
            }
            let day = SpecialDay {
                name: entry.name,
                is_off_day: entry.is_off_day,
            };
            if days.insert(entry.date, day).is_some() {
                return Err(invalid(format!("{} is listed twice", entry.date)));
            }
        }
        Ok(Self {
            year,
            papers: file.papers,
            days,
        })
    }

    /// The year this data is for.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// References to the notices the data comes from.
    pub fn papers(&self) -> &[String] {
        &self.papers
    }

    /// The listed exception days, in date order.
    pub fn days(&self) -> impl Iterator<Item = (NaiveDate, &SpecialDay)> {
        self.days.iter().map(|(date, day)| (*date, day))
    }

    /// The exception listed for `date`, if any.
    pub fn get(&self, date: NaiveDate) -> Option<&SpecialDay> {
        self.days.get(&date)
    }
}

/// The on-disk shape; unknown keys such as `$schema` are ignored.
#[derive(Deserialize)]
struct YearFile {
    year: i32,
    #[serde(default)]
    papers: Vec<String>,
    days: Vec<DayEntry>,
}

#[derive(Deserialize)]
struct DayEntry {
    name: String,
    date: NaiveDate,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

/// The years built into the crate, from the State Council's annual notices.
pub(crate) fn builtin() -> impl Iterator<Item = YearData> {
    NOTICES.iter().map(Notice::to_year_data)
}

/// One year's State Council notice (国务院办公厅关于部分节假日安排的通知), transcribed as
/// it is written: spans of days off and single make-up working days.
struct Notice {
    year: i32,
    paper: &'static str,
    arrangements: &'static [Arrangement],
}

enum Arrangement {
    /// `first` to `last` inclusive are days off (放假), weekends inside the span included.
    Off {
        name: &'static str,
        first: NaiveDate,
        last: NaiveDate,
    },
    /// A weekend day that is a working day (调休上班).
    MakeUp { name: &'static str, date: NaiveDate },
}

impl Notice {
    fn to_year_data(&self) -> YearData {
        let mut days = BTreeMap::new();
        for arrangement in self.arrangements {
            match *arrangement {
                Arrangement::Off { name, first, last } => {
                    for date in first.iter_days().take_while(|date| *date <= last) {
                        let day = SpecialDay {
                            name: name.to_owned(),
                            is_off_day: true,
                        };
                        days.insert(date, day);
                    }
                }
                Arrangement::MakeUp { name, date } => {
                    let day = SpecialDay {
                        name: name.to_owned(),
                        is_off_day: false,
                    };
                    days.insert(date, day);
                }
            }
        }
        YearData {
            year: self.year,
            papers: vec![self.paper.to_owned()],
            days,
        }
    }
}

/// A date in a `const` table: an impossible date fails the build, not a run.
const fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("impossible date in the built-in holiday table"),
    }
}

const fn off(name: &'static str, first: NaiveDate, last: NaiveDate) -> Arrangement {
    Arrangement::Off { name, first, last }
}

const fn make_up(name: &'static str, date: NaiveDate) -> Arrangement {
    Arrangement::MakeUp { name, date }
}

const NOTICES: &[Notice] = &[
    Notice {
        year: 2025,
        paper: "国务院办公厅关于2025年部分节假日安排的通知（国办发明电〔2024〕12号）",
        arrangements: &[
            // 元旦：1月1日（周三）放假1天，不调休。
            off("元旦", ymd(2025, 1, 1), ymd(2025, 1, 1)),
            // 春节：1月28日（农历除夕、周二）至2月4日（农历正月初七、周二）放假调休，共8天。
            // 1月26日（周日）、2月8日（周六）上班。
            make_up("春节", ymd(2025, 1, 26)),
            off("春节", ymd(2025, 1, 28), ymd(2025, 2, 4)),
            make_up("春节", ymd(2025, 2, 8)),
            // 清明节：4月4日（周五）至6日（周日）放假，共3天。
            off("清明节", ymd(2025, 4, 4), ymd(2025, 4, 6)),
            // 劳动节：5月1日（周四）至5日（周一）放假调休，共5天。4月27日（周日）上班。
            make_up("劳动节", ymd(2025, 4, 27)),
            off("劳动节", ymd(2025, 5, 1), ymd(2025, 5, 5)),
            // 端午节：5月31日（周六）至6月2日（周一）放假，共3天。
            off("端午节", ymd(2025, 5, 31), ymd(2025, 6, 2)),
            // 国庆节、中秋节：10月1日（周三）至8日（周三）放假调休，共8天。
            // 9月28日（周日）、10月11日（周六）上班。
            make_up("国庆节、中秋节", ymd(2025, 9, 28)),
            off("国庆节、中秋节", ymd(2025, 10, 1), ymd(2025, 10, 8)),
            make_up("国庆节、中秋节", ymd(2025, 10, 11)),
        ],
    },
    Notice {
        year: 2026,
        paper: "国务院办公厅关于2026年部分节假日安排的通知（2025年11月）",
        arrangements: &[
            // 元旦：1月1日（周四）至3日（周六）放假调休，共3天。1月4日（周日）上班。
            off("元旦", ymd(2026, 1, 1), ymd(2026, 1, 3)),
            make_up("元旦", ymd(2026, 1, 4)),
            // 春节：2月15日（农历腊月二十八、周日）至23日（农历正月初七、周一）放假调休，
            // 共9天。2月14日（周六）、2月28日（周六）上班。
            make_up("春节", ymd(2026, 2, 14)),
            off("春节", ymd(2026, 2, 15), ymd(2026, 2, 23)),
            make_up("春节", ymd(2026, 2, 28)),
            // 清明节：4月4日（周六）至6日（周一）放假，共3天。
            off("清明节", ymd(2026, 4, 4), ymd(2026, 4, 6)),
            // 劳动节：5月1日（周五）至5日（周二）放假调休，共5天。5月9日（周六）上班。
            off("劳动节", ymd(2026, 5, 1), ymd(2026, 5, 5)),
            make_up("劳动节", ymd(2026, 5, 9)),
            // 端午节：6月19日（周五）至21日（周日）放假，共3天。
            off("端午节", ymd(2026, 6, 19), ymd(2026, 6, 21)),
            // 中秋节：9月25日（周五）至27日（周日）放假，共3天。
            off("中秋节", ymd(2026, 9, 25), ymd(2026, 9, 27)),
            // 国庆节：10月1日（周四）至7日（周三）放假调休，共7天。
            // 9月20日（周日）、10月10日（周六）上班。
            make_up("国庆节", ymd(2026, 9, 20)),
            off("国庆节", ymd(2026, 10, 1), ymd(2026, 10, 7)),
            make_up("国庆节", ymd(2026, 10, 10)),
        ],
    },
];

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;

    fn reason(json: &str) -> String {
        match YearData::from_json(json, "test.json") {
            Err(CalendarError::InvalidYearData { origin, reason }) => {
                assert_eq!(origin, "test.json");
                reason
            }
            other => panic!("expected InvalidYearData, got {other:?}"),
        }
    }

    #[test]
    fn builtin_years_have_the_notices_day_counts() {
        let years: Vec<YearData> = builtin().collect();
        assert_eq!(
            years.iter().map(YearData::year).collect::<Vec<_>>(),
            [2025, 2026]
        );
        // 2025: 1 + 8+2 + 3 + 5+1 + 3 + 8+2; 2026: 3+1 + 9+2 + 3 + 5+1 + 3 + 3 + 7+2.
        assert_eq!(years[0].days().count(), 33);
        assert_eq!(years[1].days().count(), 39);
    }

    #[test]
    fn builtin_make_up_days_are_weekends_and_dates_are_in_their_year() {
        for year in builtin() {
            for (date, day) in year.days() {
                assert_eq!(date.year(), year.year());
                if !day.is_off_day {
                    assert!(
                        matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
                        "make-up day {date} is not at a weekend"
                    );
                }
            }
        }
    }

    #[test]
    fn parses_the_holiday_cn_format() {
        let json = r#"{
            "$schema": "https://example.invalid/schema.json",
            "year": 2027,
            "papers": ["notice"],
            "days": [
                {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
                {"name": "元旦", "date": "2026-12-31", "isOffDay": true},
                {"name": "春节", "date": "2027-02-06", "isOffDay": false}
            ]
        }"#;
        let year = YearData::from_json(json, "test.json").unwrap();
        assert_eq!(year.year(), 2027);
        assert_eq!(year.papers(), ["notice"]);
        assert_eq!(year.days().count(), 3);
        let make_up = year.get(ymd(2027, 2, 6)).unwrap();
        assert_eq!(make_up.name, "春节");
        assert!(!make_up.is_off_day);
    }

    #[test]
    fn rejects_inconsistent_data() {
        assert!(reason("{").contains("EOF"));
        assert!(
            reason(r#"{"year": 2027, "days": [{"date": "2027-01-01", "isOffDay": true}]}"#)
                .contains("missing field `name`")
        );
        assert!(
            reason(
                r#"{"year": 2027, "days": [{"name": "x", "date": "2027-02-30", "isOffDay": true}]}"#
            )
            .contains("out of range")
        );
        assert_eq!(
            reason(r#"{"year": 2027, "days": []}"#),
            "year 2027 lists no days"
        );
        assert!(
            reason(
                r#"{"year": 1990, "days": [{"name": "x", "date": "1990-01-01", "isOffDay": true}]}"#
            )
            .contains("year 1990 is outside 1992-9999")
        );
        assert_eq!(
            reason(
                r#"{"year": 2027, "days": [{"name": "x", "date": "2029-01-01", "isOffDay": true}]}"#
            ),
            "2029-01-01 does not belong to year 2027"
        );
        assert_eq!(
            reason(
                r#"{"year": 2027, "days": [{"name": "x", "date": "2027-01-01", "isOffDay": true},
                                           {"name": "y", "date": "2027-01-01", "isOffDay": false}]}"#
            ),
            "2027-01-01 is listed twice"
        );
    }
}
