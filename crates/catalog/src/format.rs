//! Import and export: CSV, JSON and YAML.
//!
//! # CSV
//! One row per item, UTF-8, with this header (column order is free on import, the names are
//! not; `description`, `keywords`, `phrasings`, `co_units` and `notes` may be left out):
//!
//! ```text
//! code,path,name,description,keywords,phrasings,responsibility,unit,co_units,grade,accept_hours,respond_hours,complete_days,notes
//! ```
//!
//! * `path` is `major|minor|item`; list fields (`keywords`, `phrasings`, `co_units`, `notes`)
//!   are joined with `|`, which therefore cannot occur inside an element.
//! * `responsibility` is `functional` (职能) with the owner's code in `unit`, or `territorial`
//!   (属地) with `unit` empty.
//! * `grade` is `urgent`/`normal` (紧急/一般); limits are positive whole numbers
//!   (`accept_hours`, `respond_hours` in working hours, `complete_days` in working days).
//!
//! A CSV file carries no unit directory and no version: the caller supplies both.
//! Problems are reported by physical line (the header is line 1).
//!
//! # JSON and YAML
//! The serde form of [`Catalog`]: `{ "version", "units": [Unit…], "items": [CatalogItem…] }`,
//! `responsibility` being `{"type": "functional", "unit": "DEP-ZJ"}` or `{"type": "territorial"}`.
//! `units` and `version` may be left out (the caller's defaults apply). Problems are reported
//! by item index, plus the line where the item starts for JSON.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::CatalogError;
use crate::model::{Catalog, Grade, Responsibility, Unit, UnitDirectory};
use crate::validate::{self, Draft, LIMIT_FIELDS, Location, Problem, Style};

/// The CSV header written on export.
pub const CSV_HEADER: [&str; 14] = [
    "code",
    "path",
    "name",
    "description",
    "keywords",
    "phrasings",
    "responsibility",
    "unit",
    "co_units",
    "grade",
    "accept_hours",
    "respond_hours",
    "complete_days",
    "notes",
];

const CSV_REQUIRED: [&str; 9] = [
    "code",
    "path",
    "name",
    "responsibility",
    "unit",
    "grade",
    "accept_hours",
    "respond_hours",
    "complete_days",
];

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One row per item.
    Csv,
    /// The serde form of [`Catalog`].
    Json,
    /// The serde form of [`Catalog`], as YAML.
    Yaml,
}

impl Format {
    /// The format named by a file extension (`csv`, `json`, `yaml`/`yml`).
    pub fn from_path(path: &Path) -> Option<Self> {
        Self::from_name(path.extension()?.to_str()?)
    }

    /// The format named `csv`, `json` or `yaml`/`yml` (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Defaults for what a file does not carry.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions<'a> {
    /// Unit directory for CSV files and JSON/YAML files without `units`.
    pub units: &'a UnitDirectory,
    /// Version label for CSV files and JSON/YAML files without `version`.
    pub version: &'a str,
}

/// Parses and validates a catalog. On any problem returns [`CatalogError::Invalid`] with all
/// of them. `progress` is called now and then with the number of bytes read (CSV only).
pub fn read(
    text: &str,
    format: Format,
    opts: &ReadOptions<'_>,
    progress: Option<&mut dyn FnMut(u64)>,
) -> Result<Catalog, CatalogError> {
    match format {
        Format::Csv => read_csv(text, opts, progress),
        Format::Json => read_json(text, opts),
        Format::Yaml => read_yaml(text, opts),
    }
}

/// Serialises a catalog.
pub fn write(catalog: &Catalog, format: Format) -> Result<String, CatalogError> {
    match format {
        Format::Csv => to_csv(catalog),
        Format::Json => serde_json::to_string_pretty(catalog)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| CatalogError::parse("json", e)),
        Format::Yaml => serde_yaml::to_string(catalog).map_err(|e| CatalogError::parse("yaml", e)),
    }
}

/// Parses a CSV catalog (see the module docs).
pub fn from_csv(text: &str, units: &UnitDirectory, version: &str) -> Result<Catalog, CatalogError> {
    read_csv(text, &ReadOptions { units, version }, None)
}

/// Parses a JSON catalog; `units`/`version` default to the built-in directory and `"imported"`.
pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
    let units = UnitDirectory::guangming();
    read_json(
        text,
        &ReadOptions {
            units: &units,
            version: "imported",
        },
    )
}

/// Serialises the items as CSV with [`CSV_HEADER`].
pub fn to_csv(catalog: &Catalog) -> Result<String, CatalogError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)
        .map_err(|e| CatalogError::parse("csv", e))?;
    for it in catalog.items() {
        let (resp, unit) = match &it.responsibility {
            Responsibility::Functional { unit } => ("functional", unit.as_str()),
            Responsibility::Territorial => ("territorial", ""),
        };
        let accept = it.limits.accept_hours.to_string();
        let respond = it.limits.respond_hours.to_string();
        let complete = it.limits.complete_days.to_string();
        let path = it.path.join("|");
        let keywords = it.keywords.join("|");
        let phrasings = it.phrasings.join("|");
        let co = it.co_units.join("|");
        let notes = it.notes.join("|");
        w.write_record([
            it.code.as_str(),
            &path,
            &it.name,
            &it.description,
            &keywords,
            &phrasings,
            resp,
            unit,
            &co,
            it.grade.as_str(),
            &accept,
            &respond,
            &complete,
            &notes,
        ])
        .map_err(|e| CatalogError::parse("csv", e))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CatalogError::parse("csv", e.error()))?;
    String::from_utf8(bytes).map_err(|e| CatalogError::parse("csv", e))
}

fn split_list(s: &str) -> Vec<String> {
    s.split('|')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_limit(raw: Option<&str>) -> Result<u32, String> {
    match raw.map(str::trim) {
        None | Some("") => Err("missing".into()),
        Some(s) => s
            .parse::<u32>()
            .map_err(|_| format!("not a whole number of hours/days: {s:?}")),
    }
}

fn parse_grade(raw: Option<&str>) -> Result<Grade, String> {
    match raw.map(str::trim) {
        None | Some("") => Err("missing".into()),
        Some(s) => Grade::parse(s)
            .ok_or_else(|| format!("invalid grade {s:?} (expected urgent or normal)")),
    }
}

/// Physical line numbers (1-based) of records' byte offsets, counted forward through the text.
/// With CRLF line endings (files saved by Excel on Windows) the csv crate's `Position` of a
/// record is the `\n` ending the line before it and its `line()` one short: problems would
/// point at the line above.
struct LineCounter<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// The line of the record at byte `byte`; offsets are expected in increasing order (a
    /// smaller one restarts the count).
    fn line_at(&mut self, byte: u64) -> usize {
        let mut byte = usize::try_from(byte).map_or(self.text.len(), |b| b.min(self.text.len()));
        if self.text.get(byte) == Some(&b'\n') {
            byte += 1;
        }
        if byte < self.pos {
            (self.pos, self.line) = (0, 1);
        }
        self.line += self.text[self.pos..byte]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = byte;
        self.line
    }
}

fn read_csv(
    text: &str,
    opts: &ReadOptions<'_>,
    mut progress: Option<&mut dyn FnMut(u64)>,
) -> Result<Catalog, CatalogError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| CatalogError::parse("csv", e))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let mut problems: Vec<Problem> = CSV_REQUIRED
        .iter()
        .filter(|c| col(c).is_none())
        .map(|c| Problem {
            location: Location::Line(1),
            field: (*c).to_string(),
            message: "missing column in header".into(),
        })
        .collect();
    if !problems.is_empty() {
        return Err(CatalogError::Invalid { problems });
    }
    let idx: Vec<Option<usize>> = CSV_HEADER.iter().map(|c| col(c)).collect();
    let mut drafts = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut lines = LineCounter::new(text.as_bytes());
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(CatalogError::parse("csv", e)),
        }
        let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let get = |name: &str| -> Option<&str> {
            let i = CSV_HEADER.iter().position(|c| *c == name)?;
            idx.get(i).copied().flatten().and_then(|i| record.get(i))
        };
        let mut d = Draft {
            code: get("code").unwrap_or("").trim().to_string(),
            path: get("path")
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.split('|').map(|l| l.trim().to_string()).collect()),
            name: get("name").unwrap_or("").trim().to_string(),
            description: get("description").unwrap_or("").trim().to_string(),
            keywords: split_list(get("keywords").unwrap_or("")),
            phrasings: split_list(get("phrasings").unwrap_or("")),
            co_units: split_list(get("co_units").unwrap_or("")),
            notes: split_list(get("notes").unwrap_or("")),
            ..Draft::default()
        };
        let unit = get("unit").unwrap_or("").trim();
        d.responsibility = match get("responsibility").map(str::trim).unwrap_or("") {
            "functional" | "职能" => Some(Responsibility::functional(unit)),
            "territorial" | "属地" => {
                if !unit.is_empty() {
                    d.pre.push((
                        "unit".into(),
                        format!("must be empty for a territorial item, got {unit:?}"),
                    ));
                }
                Some(Responsibility::Territorial)
            }
            "" => {
                d.pre.push(("responsibility".into(), "missing".into()));
                None
            }
            other => {
                d.pre.push((
                    "responsibility".into(),
                    format!("invalid {other:?} (expected functional or territorial)"),
                ));
                None
            }
        };
        match parse_grade(get("grade")) {
            Ok(g) => d.grade = Some(g),
            Err(m) => d.pre.push(("grade".into(), m)),
        }
        for (i, name) in LIMIT_FIELDS.iter().enumerate() {
            match parse_limit(get(name)) {
                Ok(v) => d.limits[i] = Some(v),
                Err(m) => d.pre.push(((*name).to_string(), m)),
            }
        }
        drafts.push((Location::Line(line), d));
        if drafts.len() % 512 == 0
            && let Some(p) = progress.as_mut()
        {
            p(record.position().map_or(0, |p| p.byte()));
        }
    }
    if let Some(p) = progress.as_mut() {
        p(text.len() as u64);
    }
    let items = validate::check_items(drafts, opts.units, Style::Csv, &mut problems);
    if !problems.is_empty() {
        return Err(CatalogError::Invalid { problems });
    }
    Ok(Catalog::new(opts.version, items, opts.units.clone()))
}

#[derive(Deserialize)]
struct RawJson<'a> {
    version: Option<String>,
    units: Option<Vec<Value>>,
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ValueTop {
    version: Option<String>,
    units: Option<Vec<Value>>,
    items: Vec<Value>,
}

fn read_json(text: &str, opts: &ReadOptions<'_>) -> Result<Catalog, CatalogError> {
    let raw: RawJson<'_> =
        serde_json::from_str(text).map_err(|e| CatalogError::parse("json", e))?;
    // Lines of the items: each RawValue borrows from `text`, so its offset is its position.
    let base = text.as_ptr() as usize;
    let mut line = 1usize;
    let mut scanned = 0usize;
    let mut items = Vec::with_capacity(raw.items.len());
    for r in &raw.items {
        let off = (r.get().as_ptr() as usize)
            .saturating_sub(base)
            .min(text.len());
        if off >= scanned {
            line += text.as_bytes()[scanned..off]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            scanned = off;
        }
        let v: Value = serde_json::from_str(r.get()).map_err(|e| CatalogError::parse("json", e))?;
        items.push((Some(line), v));
    }
    from_values(raw.version, raw.units, items, opts)
}

fn read_yaml(text: &str, opts: &ReadOptions<'_>) -> Result<Catalog, CatalogError> {
    let top: ValueTop = serde_yaml::from_str(text).map_err(|e| CatalogError::parse("yaml", e))?;
    let items = top.items.into_iter().map(|v| (None, v)).collect();
    from_values(top.version, top.units, items, opts)
}

fn from_values(
    version: Option<String>,
    units: Option<Vec<Value>>,
    items: Vec<(Option<usize>, Value)>,
    opts: &ReadOptions<'_>,
) -> Result<Catalog, CatalogError> {
    let mut problems = Vec::new();
    let units = match units {
        None => opts.units.clone(),
        Some(values) => {
            let mut list = Vec::with_capacity(values.len());
            for (i, v) in values.into_iter().enumerate() {
                match serde_json::from_value::<Unit>(v) {
                    Ok(u) => list.push(u),
                    Err(e) => problems.push(Problem {
                        location: Location::Unit(i),
                        field: "unit".into(),
                        message: e.to_string(),
                    }),
                }
            }
            let dir = UnitDirectory::new(list);
            validate::check_units(&dir, &mut problems);
            dir
        }
    };
    let drafts = items
        .into_iter()
        .enumerate()
        .map(|(index, (line, v))| (Location::Item { index, line }, draft_from_value(&v)))
        .collect();
    let items = validate::check_items(drafts, &units, Style::Json, &mut problems);
    if !problems.is_empty() {
        return Err(CatalogError::Invalid { problems });
    }
    Ok(Catalog::new(
        version.unwrap_or_else(|| opts.version.to_string()),
        items,
        units,
    ))
}

fn draft_from_value(v: &Value) -> Draft {
    let mut d = Draft::default();
    let Some(obj) = v.as_object() else {
        d.pre.push(("item".into(), "not an object".into()));
        return d;
    };
    let string = |d: &mut Draft, key: &str| -> String {
        match obj.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(other) => {
                d.pre
                    .push((key.into(), format!("must be a string, got {other}")));
                String::new()
            }
        }
    };
    d.code = string(&mut d, "code");
    d.name = string(&mut d, "name");
    d.description = string(&mut d, "description");
    let list = |d: &mut Draft, key: &str| -> Vec<String> {
        match obj.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(xs)) => xs
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.trim().to_string()),
                    other => {
                        d.pre
                            .push((key.into(), format!("elements must be strings, got {other}")));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                d.pre.push((
                    key.into(),
                    format!("must be a list of strings, got {other}"),
                ));
                Vec::new()
            }
        }
    };
    d.keywords = list(&mut d, "keywords");
    d.phrasings = list(&mut d, "phrasings");
    d.co_units = list(&mut d, "co_units");
    d.notes = list(&mut d, "notes");
    d.path = match obj.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::Array(xs)) => Some(
            xs.iter()
                .map(|x| x.as_str().map(|s| s.trim().to_string()).unwrap_or_default())
                .collect(),
        ),
        Some(Value::String(s)) => Some(s.split('|').map(|l| l.trim().to_string()).collect()),
        Some(_) => Some(Vec::new()),
    };
    d.responsibility = match obj.get("responsibility") {
        None | Some(Value::Null) => {
            d.pre.push(("responsibility".into(), "missing".into()));
            None
        }
        Some(Value::String(s)) if matches!(s.trim(), "territorial" | "属地") => {
            Some(Responsibility::Territorial)
        }
        Some(Value::Object(r)) => match r.get("type").and_then(Value::as_str).map(str::trim) {
            Some("territorial" | "属地") => Some(Responsibility::Territorial),
            Some("functional" | "职能") => Some(Responsibility::functional(
                r.get("unit").and_then(Value::as_str).unwrap_or("").trim(),
            )),
            other => {
                d.pre.push((
                    "responsibility.type".into(),
                    format!(
                        "invalid {:?} (expected functional or territorial)",
                        other.unwrap_or("")
                    ),
                ));
                None
            }
        },
        Some(other) => {
            d.pre.push((
                "responsibility".into(),
                format!("invalid {other} (expected {{\"type\": \"functional\", \"unit\": …}} or {{\"type\": \"territorial\"}})"),
            ));
            None
        }
    };
    match obj.get("grade") {
        None | Some(Value::Null) => d.pre.push(("grade".into(), "missing".into())),
        Some(Value::String(s)) => match parse_grade(Some(s)) {
            Ok(g) => d.grade = Some(g),
            Err(m) => d.pre.push(("grade".into(), m)),
        },
        Some(other) => d.pre.push((
            "grade".into(),
            format!("invalid grade {other} (expected urgent or normal)"),
        )),
    }
    let limits = obj.get("limits").and_then(Value::as_object);
    if limits.is_none() {
        d.pre.push(("limits".into(), "missing".into()));
    } else {
        for (i, name) in LIMIT_FIELDS.iter().enumerate() {
            let field = Style::Json.limit(name);
            match limits.and_then(|l| l.get(*name)) {
                None | Some(Value::Null) => d.pre.push((field, "missing".into())),
                Some(x) => match x.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => d.limits[i] = Some(n),
                    None => d
                        .pre
                        .push((field, format!("not a whole number of hours/days: {x}"))),
                },
            }
        }
    }
    d
}

/// Reads a unit directory from a JSON or YAML list of [`Unit`]s, or a CSV with columns
/// `code,name,kind,parent`.
pub fn read_units(text: &str, format: Format) -> Result<UnitDirectory, CatalogError> {
    let units: Vec<Unit> = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| CatalogError::parse("units", e))?,
        Format::Yaml => serde_yaml::from_str(text).map_err(|e| CatalogError::parse("units", e))?,
        Format::Csv => {
            let mut rdr = csv::Reader::from_reader(text.as_bytes());
            let mut units = Vec::new();
            let mut problems = Vec::new();
            let mut lines = LineCounter::new(text.as_bytes());
            for rec in rdr.records() {
                let rec = rec.map_err(|e| CatalogError::parse("units", e))?;
                let line = rec.position().map_or(0, |p| lines.line_at(p.byte()));
                let kind_raw = rec.get(2).unwrap_or("");
                let Some(kind) = crate::model::UnitKind::parse(kind_raw) else {
                    problems.push(Problem {
                        location: Location::Line(line),
                        field: "kind".into(),
                        message: format!("invalid unit kind {kind_raw:?}"),
                    });
                    continue;
                };
                let parent = rec.get(3).map(str::trim).filter(|p| !p.is_empty());
                units.push(Unit {
                    code: rec.get(0).unwrap_or("").trim().to_string(),
                    name: rec.get(1).unwrap_or("").trim().to_string(),
                    kind,
                    parent: parent.map(str::to_string),
                });
            }
            if !problems.is_empty() {
                return Err(CatalogError::Invalid { problems });
            }
            units
        }
    };
    let dir = UnitDirectory::new(units);
    let mut problems = Vec::new();
    validate::check_units(&dir, &mut problems);
    if problems.is_empty() {
        Ok(dir)
    } else {
        Err(CatalogError::Invalid { problems })
    }
}
