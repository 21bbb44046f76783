//! The filters every figure takes: a date range (Beijing dates, inclusive), a street, a unit
//! and a category. Parsed from query parameters (HTTP) or the request message (gRPC) with one
//! error per bad field.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use minyi_catalog::{Catalog, UnitKind};
use minyi_core::clock::shanghai;
use serde::Serialize;

use crate::facts::Fact;

/// Longest date range a request may ask for.
pub const MAX_RANGE_DAYS: i64 = 3660;
/// The default range: the last 30 days, today included.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// First day of the range (Beijing time).
    pub from: NaiveDate,
    /// Last day of the range, included.
    pub to: NaiveDate,
    /// Street unit code (`ST-GM`).
    pub street: Option<String>,
    /// Unit code: tickets it leads, co-handles or returned.
    pub unit: Option<String>,
    /// Major category name, as in the catalog's item paths.
    pub category: Option<String>,
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub description: String,
}

/// The raw filter fields, as given (empty means "not given").
#[derive(Debug, Clone, Default)]
pub struct RawFilter {
    pub from: String,
    pub to: String,
    pub street: String,
    pub unit: String,
    pub category: String,
}

impl RawFilter {
    /// Picks the filter fields out of query parameters; others are ignored.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut raw = RawFilter::default();
        for (k, v) in pairs {
            let slot = match k {
                "from" => &mut raw.from,
                "to" => &mut raw.to,
                "street" => &mut raw.street,
                "unit" => &mut raw.unit,
                "category" => &mut raw.category,
                _ => continue,
            };
            *slot = v.trim().to_owned();
        }
        raw
    }
}

/// The Beijing date of an instant.
pub fn local_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&shanghai()).date_naive()
}

/// Midnight (Beijing) starting `date`, as UTC.
pub fn day_start(date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_time(chrono::NaiveTime::MIN);
    naive
        .and_local_timezone(shanghai())
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| naive.and_utc() - Duration::hours(8))
}

/// The major categories of a catalog, sorted.
pub fn categories(catalog: &Catalog) -> Vec<String> {
    let mut c: Vec<String> = catalog.items().iter().map(|i| i.path[0].clone()).collect();
    c.sort();
    c.dedup();
    c
}

impl Filter {
    /// The default filter at `now`: the last 30 days, nothing else.
    pub fn default_at(now: DateTime<Utc>) -> Filter {
        let to = local_date(now);
        Filter {
            from: to - Duration::days(DEFAULT_RANGE_DAYS - 1),
            to,
            street: None,
            unit: None,
            category: None,
        }
    }

    /// Validates `raw` against the catalog; every bad field is reported.
    pub fn parse(
        raw: &RawFilter,
        now: DateTime<Utc>,
        catalog: &Catalog,
    ) -> Result<Filter, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, description: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                description,
            })
        };
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let default = Filter::default_at(now);
        let to = if raw.to.is_empty() {
            Some(default.to)
        } else {
            date(&raw.to)
        };
        if to.is_none() {
            bad("to", format!("`{}` is not a date (YYYY-MM-DD)", raw.to));
        }
        let to = to.unwrap_or(default.to);
        let from = if raw.from.is_empty() {
            Some(to - Duration::days(DEFAULT_RANGE_DAYS - 1))
        } else {
            date(&raw.from)
        };
        if from.is_none() {
            bad("from", format!("`{}` is not a date (YYYY-MM-DD)", raw.from));
        }
        let from = from.unwrap_or(default.from);
        if from > to {
            bad("from", format!("{from} is after `to` ({to})"));
        } else if (to - from).num_days() >= MAX_RANGE_DAYS {
            bad(
                "to",
                format!("the range may span at most {MAX_RANGE_DAYS} days"),
            );
        }
        let units = catalog.units();
        let street = (!raw.street.is_empty()).then(|| raw.street.clone());
        if let Some(s) = &street
            && units.get(s).map(|u| u.kind) != Some(UnitKind::Street)
        {
            bad("street", format!("`{s}` is not a street office code"));
        }
        let unit = (!raw.unit.is_empty()).then(|| raw.unit.clone());
        if let Some(u) = &unit
            && !units.contains(u)
        {
            bad("unit", format!("`{u}` is not a unit code"));
        }
        let category = (!raw.category.is_empty()).then(|| raw.category.clone());
        if let Some(c) = &category
            && !categories(catalog).contains(c)
        {
            bad("category", format!("`{c}` is not a major category"));
        }
        if errors.is_empty() {
            Ok(Filter {
                from,
                to,
                street,
                unit,
                category,
            })
        } else {
            Err(errors)
        }
    }

    /// The range's first instant.
    pub fn start(&self) -> DateTime<Utc> {
        day_start(self.from)
    }

    /// The instant just after the range (midnight ending `to`).
    pub fn end(&self) -> DateTime<Utc> {
        day_start(self.to + Duration::days(1))
    }

    pub fn in_range(&self, t: DateTime<Utc>) -> bool {
        self.start() <= t && t < self.end()
    }

    /// Street, unit and category match (the date range aside).
    pub fn matches_dims(&self, f: &Fact) -> bool {
        self.street.as_ref().is_none_or(|s| &f.street == s)
            && self.category.as_ref().is_none_or(|c| &f.category == c)
            && self.unit.as_ref().is_none_or(|u| f.involves(u))
    }

    /// Received in the range and matching the other filters.
    pub fn matches(&self, f: &Fact) -> bool {
        self.in_range(f.received_at) && self.matches_dims(f)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn parses_defaults_and_reports_every_bad_field() {
        let catalog = minyi_catalog::demo_slice();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 17, 0, 0).unwrap(); // 01:00 on the 26th
        let f = Filter::parse(&RawFilter::default(), now, &catalog).unwrap();
        assert_eq!(f.to, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
        assert_eq!(f.from, NaiveDate::from_ymd_opt(2026, 10, 28).unwrap());
        assert_eq!(
            f.end(),
            Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap()
        );

        let raw = RawFilter::from_pairs([
            ("from", "2026-13-01"),
            ("to", "2026-11-01"),
            ("street", "DEP-ZJ"),
            ("unit", "NOPE"),
            ("category", "不存在"),
            ("token", "ignored"),
        ]);
        let errors = Filter::parse(&raw, now, &catalog).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["from", "street", "unit", "category"]);

        let raw = RawFilter::from_pairs([("from", "2026-11-02"), ("to", "2026-11-01")]);
        let errors = Filter::parse(&raw, now, &catalog).unwrap_err();
        assert_eq!(errors[0].field, "from");
    }
}
