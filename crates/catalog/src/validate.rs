//! Validation: every problem of a catalog, each with its location and field.
//!
//! Parsers in [`crate::format`](mod@crate::format) turn each row or item into a lenient `Draft` (recording what
//! they could not even parse), and `check_items` checks all drafts the same way whatever their
//! source, so CSV, JSON, YAML and in-memory catalogs get identical rules and messages.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Catalog, CatalogItem, Grade, Limits, Responsibility, UnitDirectory, UnitKind};

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A physical line of a CSV file (the header is line 1).
    Line(usize),
    /// An item of a JSON/YAML file or an in-memory catalog: 0-based index, and the line where
    /// it starts when known (JSON).
    Item {
        /// Index in `items`.
        index: usize,
        /// 1-based line where the item starts.
        line: Option<usize>,
    },
    /// A unit of the directory: 0-based index in `units`.
    Unit(usize),
    /// The file as a whole.
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Item {
                index,
                line: Some(l),
            } => write!(f, "line {l}: items[{index}]"),
            Location::Item { index, line: None } => write!(f, "items[{index}]"),
            Location::Unit(i) => write!(f, "units[{i}]"),
            Location::File => f.write_str("file"),
        }
    }
}

/// One problem: `location: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where.
    pub location: Location,
    /// Which field (`grade`, `limits.accept_hours`, `co_units` …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.field, self.message)
    }
}

/// Field naming of the source: CSV columns are flat, JSON fields nested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Csv,
    Json,
}

impl Style {
    pub(crate) fn limit(self, name: &str) -> String {
        match self {
            Style::Csv => name.to_string(),
            Style::Json => format!("limits.{name}"),
        }
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            Style::Csv => "unit",
            Style::Json => "responsibility.unit",
        }
    }
}

/// An item as parsed, before checks. `None` fields could not be parsed; the parser recorded
/// why in `pre`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Draft {
    pub code: String,
    pub path: Option<Vec<String>>,
    pub name: String,
    pub description: String,
    pub keywords: Vec<String>,
    pub phrasings: Vec<String>,
    pub responsibility: Option<Responsibility>,
    pub co_units: Vec<String>,
    pub grade: Option<Grade>,
    pub limits: [Option<u32>; 3],
    pub notes: Vec<String>,
    /// Problems found while parsing: (field, message).
    pub pre: Vec<(String, String)>,
}

pub(crate) const LIMIT_FIELDS: [&str; 3] = ["accept_hours", "respond_hours", "complete_days"];

impl From<&CatalogItem> for Draft {
    fn from(it: &CatalogItem) -> Self {
        Draft {
            code: it.code.clone(),
            path: Some(it.path.to_vec()),
            name: it.name.clone(),
            description: it.description.clone(),
            keywords: it.keywords.clone(),
            phrasings: it.phrasings.clone(),
            responsibility: Some(it.responsibility.clone()),
            co_units: it.co_units.clone(),
            grade: Some(it.grade),
            limits: [
                Some(it.limits.accept_hours),
                Some(it.limits.respond_hours),
                Some(it.limits.complete_days),
            ],
            notes: it.notes.clone(),
            pre: Vec::new(),
        }
    }
}

/// Checks drafts against each other and the directory. Returns the items that passed (all of
/// them when there are no problems) and appends problems.
pub(crate) fn check_items(
    drafts: Vec<(Location, Draft)>,
    units: &UnitDirectory,
    style: Style,
    problems: &mut Vec<Problem>,
) -> Vec<CatalogItem> {
    let mut first_seen: HashMap<String, Location> = HashMap::new();
    let mut items = Vec::with_capacity(drafts.len());
    for (loc, d) in drafts {
        let before = problems.len();
        let mut report = |field: &str, message: String| {
            problems.push(Problem {
                location: loc.clone(),
                field: field.to_string(),
                message,
            });
        };
        for (field, message) in &d.pre {
            report(field, message.clone());
        }
        let code = d.code.trim();
        if code.is_empty() {
            report("code", "missing".into());
        } else if let Some(first) = first_seen.get(code) {
            report(
                "code",
                format!("duplicate code {code:?} (first at {first})"),
            );
        } else {
            first_seen.insert(code.to_string(), loc.clone());
        }
        match &d.path {
            None => report("path", "missing".into()),
            Some(levels) => {
                if levels.len() != 3 || levels.iter().any(|l| l.trim().is_empty()) {
                    report(
                        "path",
                        format!(
                            "expected exactly 3 non-empty levels (major|minor|item), got {:?}",
                            levels.join("|")
                        ),
                    );
                } else if levels.iter().any(|l| l.contains('|')) {
                    report("path", "a level contains '|'".into());
                }
            }
        }
        if d.name.trim().is_empty() {
            report("name", "empty".into());
        }
        if let Some(Responsibility::Functional { unit }) = &d.responsibility {
            if unit.trim().is_empty() {
                report(style.unit(), "missing for a functional item".into());
            } else if !units.contains(unit) {
                report(style.unit(), format!("unknown unit {unit:?}"));
            }
        }
        for cu in &d.co_units {
            if !units.contains(cu) {
                report("co_units", format!("unknown unit {cu:?}"));
            }
        }
        for (name, value) in LIMIT_FIELDS.iter().zip(d.limits) {
            if value == Some(0) {
                report(&style.limit(name), "must be positive, got 0".into());
            }
        }
        for (field, list) in [
            ("keywords", &d.keywords),
            ("phrasings", &d.phrasings),
            ("co_units", &d.co_units),
            ("notes", &d.notes),
        ] {
            if list.iter().any(|x| x.contains('|')) {
                report(
                    field,
                    "an element contains '|' (the CSV list separator)".into(),
                );
            }
        }
        if problems.len() > before {
            continue;
        }
        if let (Some(path), Some(responsibility), Some(grade), [Some(a), Some(r), Some(c)]) =
            (d.path, d.responsibility, d.grade, d.limits)
        {
            let [major, minor, item] = match <[String; 3]>::try_from(path) {
                Ok(p) => p,
                Err(_) => continue,
            };
            items.push(CatalogItem {
                code: code.to_string(),
                path: [major, minor, item],
                name: d.name,
                description: d.description,
                keywords: d.keywords,
                phrasings: d.phrasings,
                responsibility,
                co_units: d.co_units,
                grade,
                limits: Limits {
                    accept_hours: a,
                    respond_hours: r,
                    complete_days: c,
                },
                notes: d.notes,
            });
        }
    }
    items
}

/// Checks the unit directory: codes present and unique, names present, parents known and of
/// the right kind (community → street, grid → community).
pub(crate) fn check_units(units: &UnitDirectory, problems: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, u) in units.units().iter().enumerate() {
        let mut report = |field: &str, message: String| {
            problems.push(Problem {
                location: Location::Unit(i),
                field: field.to_string(),
                message,
            });
        };
        if u.code.trim().is_empty() {
            report("code", "missing".into());
        } else if let Some(first) = seen.get(u.code.as_str()) {
            report(
                "code",
                format!("duplicate unit code {:?} (first at units[{first}])", u.code),
            );
        } else {
            seen.insert(&u.code, i);
        }
        if u.name.trim().is_empty() {
            report("name", "empty".into());
        }
        let wanted = match u.kind {
            UnitKind::Community => Some(UnitKind::Street),
            UnitKind::Grid => Some(UnitKind::Community),
            _ => None,
        };
        match (&u.parent, wanted) {
            (Some(p), _) => match units.get(p) {
                None => report("parent", format!("unknown unit {p:?}")),
                Some(parent) if wanted.is_some_and(|w| w != parent.kind) => report(
                    "parent",
                    format!(
                        "a {} must belong to a {}, {p:?} is a {}",
                        u.kind.as_str(),
                        wanted.map_or("", |w| w.as_str()),
                        parent.kind.as_str()
                    ),
                ),
                Some(_) => {}
            },
            (None, Some(w)) => report(
                "parent",
                format!(
                    "missing: a {} must belong to a {}",
                    u.kind.as_str(),
                    w.as_str()
                ),
            ),
            (None, None) => {}
        }
    }
}

/// Every problem of an in-memory catalog.
pub(crate) fn validate_catalog(catalog: &Catalog) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_units(catalog.units(), &mut problems);
    let drafts = catalog
        .items()
        .iter()
        .enumerate()
        .map(|(index, it)| (Location::Item { index, line: None }, Draft::from(it)))
        .collect();
    check_items(drafts, catalog.units(), Style::Json, &mut problems);
    problems
}
