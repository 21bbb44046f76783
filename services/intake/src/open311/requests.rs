//! Service requests: from a GeoReport POST form to a Minyi submission, and from a ticket back
//! to the public view of a service request. No I/O here.
//!
//! Personal data goes one way only: `first_name`, `last_name` and `phone` become the sealed
//! caller of the ticket and are never part of a response. `email` and `account_id` are not
//! kept at all (Minyi's caller record has no place for them, and data that is not kept cannot
//! leak). Free text that is published (the description, follow-ups) has long digit runs
//! masked, the way lists mask phones (`138****5678`), in case a citizen typed a number into it.

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Utc};
use minyi_catalog::{Catalog, CatalogItem};
use minyi_core::clock::shanghai;
use minyi_core::petition::{CallerInput, Channel, SubmissionInput, TicketStatus, Violations};
use minyi_core::store::{DispatchRecord, DispatchState, RoutingRecord, TicketRecord};
use sha2::{Digest, Sha256};

use super::doc::Node;
use super::services::{attribute_lines, code_from_title, title_for};

/// Form or query fields in the order received. Repeated keys are kept (list attributes).
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (a body or a query string).
    pub fn parse(raw: &[u8]) -> Option<Params> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw)
            .ok()
            .map(Params)
    }

    /// The first value of `key`, trimmed; `None` when absent or blank (apps send empty fields
    /// for everything the citizen skipped).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `attribute[code]` and `attribute[code][]` pairs as `(code, value)`.
    pub fn attributes(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let inner = k.strip_prefix("attribute[")?;
                let inner = inner
                    .strip_suffix("][]")
                    .or_else(|| inner.strip_suffix(']'))?;
                Some((inner.to_owned(), v.clone()))
            })
            .collect()
    }

    pub fn merge(mut self, other: Params) -> Params {
        self.0.extend(other.0);
        self
    }
}

/// A POSTed service request, checked and ready for [`crate::IntakeApi::submit`].
#[derive(Debug, Clone)]
pub struct Report {
    pub input: SubmissionInput,
    pub service_code: Option<String>,
}

/// Builds the submission from a POST form. `submitter` is the token subject of the 311 app,
/// part of the idempotency key. Returns every bad field, named as the client spelled it;
/// `check_core` is run on the draft so rule violations of the core (phone format, lengths)
/// are reported in the same answer.
pub fn parse_report(
    p: &Params,
    catalog: &Catalog,
    submitter: &str,
    max_title_chars: usize,
    check_core: impl FnOnce(&SubmissionInput) -> Violations,
) -> Result<Report, Violations> {
    let mut v = Violations::default();

    let item: Option<&CatalogItem> = match p.get("service_code") {
        None => None,
        Some(code) => {
            let item = catalog.get(code);
            if item.is_none() {
                v.add(
                    "service_code",
                    format!("unknown service code {code:?}; see services.json"),
                );
            }
            item
        }
    };

    let description = p.get("description").unwrap_or_default();
    if description.is_empty() {
        v.add("description", "is required");
    }

    let lat = parse_coordinate(p, "lat", &mut v);
    let long = parse_coordinate(p, "long", &mut v);
    let point = match (lat, long) {
        (Some(Ok(lat)), Some(Ok(long))) => Some((lat, long)),
        // The core checks the ranges of a whole point; a lone coordinate is checked here, so
        // that one answer names every problem.
        (Some(lat), None) => {
            v.add("long", "is required when lat is given");
            check_range(lat, "lat", 90.0, &mut v);
            None
        }
        (None, Some(long)) => {
            v.add("lat", "is required when long is given");
            check_range(long, "long", 180.0, &mut v);
            None
        }
        _ => None,
    };
    let address = p.get("address_string").unwrap_or_default();
    let address_id = p.get("address_id").unwrap_or_default();
    if lat.is_none() && long.is_none() && address.is_empty() && address_id.is_empty() {
        v.add(
            "lat",
            "a location is required: lat and long, address_string or address_id",
        );
    }

    let mut extra = attribute_lines(item, &p.attributes(), &mut v);
    if !address_id.is_empty() {
        extra.push(format!("地址编号 address_id: {address_id}"));
    }
    let mut text = description.to_owned();
    if !extra.is_empty() {
        text.push_str("\n\n附加信息 Additional information:");
        for line in extra {
            text.push_str("\n- ");
            text.push_str(&line);
        }
    }

    let name = full_name(p.get("first_name"), p.get("last_name"));
    let phone = p.get("phone").unwrap_or_default();
    let caller = (!name.is_empty() || !phone.is_empty()).then(|| CallerInput {
        anonymous: false,
        name,
        phone: phone.to_owned(),
        id_number: String::new(),
    });

    let input = SubmissionInput {
        channel: Channel::Open311.to_proto(),
        text,
        title: item
            .map(|i| title_for(i, max_title_chars))
            .unwrap_or_default(),
        caller,
        address: address.to_owned(),
        point,
        event_time: None,
        attachment_urls: p
            .get("media_url")
            .map(|u| vec![u.to_owned()])
            .unwrap_or_default(),
        idempotency_key: idempotency_key(
            submitter,
            p.get("device_id").unwrap_or_default(),
            description,
            point,
            address,
            address_id,
        ),
    };

    for f in check_core(&input).0 {
        let field = client_field(&f.field);
        // The form checks above already named these fields more precisely.
        if !v.0.iter().any(|x| x.field == field) {
            v.add(field, f.description);
        }
    }
    v.into_result(Report {
        input,
        service_code: item.map(|i| i.code.clone()),
    })
}

fn parse_coordinate(p: &Params, key: &str, v: &mut Violations) -> Option<Result<f64, ()>> {
    let raw = p.get(key)?;
    match raw.parse::<f64>() {
        Ok(x) if x.is_finite() => Some(Ok(x)),
        _ => {
            v.add(
                key,
                format!("{raw:?} is not a decimal number (WGS84 degrees)"),
            );
            Some(Err(()))
        }
    }
}

fn check_range(value: Result<f64, ()>, key: &str, limit: f64, v: &mut Violations) {
    if let Ok(x) = value
        && !(-limit..=limit).contains(&x)
    {
        v.add(key, format!("{x} is out of range [-{limit}, {limit}]"));
    }
}

/// Chinese names are written family name first without a space; others as given.
fn full_name(first: Option<&str>, last: Option<&str>) -> String {
    match (first, last) {
        (Some(f), Some(l)) if !(f.is_ascii() && l.is_ascii()) => format!("{l}{f}"),
        (Some(f), Some(l)) => format!("{f} {l}"),
        (Some(x), None) | (None, Some(x)) => x.to_owned(),
        (None, None) => String::new(),
    }
}

/// Names a core validation field the way the Open311 client spelled it.
pub fn client_field(core: &str) -> &str {
    match core {
        "text" => "description",
        "title" => "service_code",
        "caller.name" => "first_name",
        "caller.phone" => "phone",
        "location.address" => "address_string",
        "location.point.latitude" => "lat",
        "location.point.longitude" => "long",
        f if f.starts_with("attachment_urls") => "media_url",
        other => other,
    }
}

/// The same report POSTed twice by the same app maps to one ticket. The key covers who sent
/// it (token subject and device) and what was reported where; it is a hash, so no personal
/// data is stored in the key. Without a `device_id`, two citizens of the same app reporting
/// the very same text at the very same place become one ticket, which is then a duplicate
/// anyway.
pub fn idempotency_key(
    submitter: &str,
    device_id: &str,
    description: &str,
    point: Option<(f64, f64)>,
    address: &str,
    address_id: &str,
) -> String {
    let point = point.map(|(a, b)| format!("{a},{b}")).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        submitter,
        device_id,
        description,
        &point,
        address,
        address_id,
    ] {
        h.update(part.as_bytes());
        // A separator that cannot occur in form text keeps ("ab","c") apart from ("a","bc").
        h.update([0u8]);
    }
    format!("open311:{}", hex::encode(h.finalize()))
}

/// `open` or `closed`, as GeoReport knows only these two.
pub fn open_or_closed(s: TicketStatus) -> &'static str {
    if s.is_open() { "open" } else { "closed" }
}

/// The finer state, for people: Chinese, then English.
pub fn status_notes(s: TicketStatus) -> &'static str {
    match s {
        TicketStatus::Received => "已受理，等待分类 Received; being classified",
        TicketStatus::NeedsDispatcher => "已受理，等待人工分拨 Received; waiting for a dispatcher",
        TicketStatus::InArbitration => {
            "责任单位争议，快速裁定中 Ownership disputed; in fast arbitration"
        }
        TicketStatus::Routed => "已分类，正在分拨 Classified; being sent to the responsible unit",
        TicketStatus::Dispatched => "已分拨至承办单位 Sent to the responsible unit",
        TicketStatus::Accepted => {
            "承办单位已签收，正在办理 Accepted by the responsible unit; in progress"
        }
        TicketStatus::Completed => "已办结 Completed",
        TicketStatus::Archived => "已办结并归档 Completed and archived",
        TicketStatus::LinkedDuplicate => {
            "与已有工单重复，已并入原工单办理 Duplicate of an earlier request; handled there"
        }
    }
}

/// W3C datetime in Beijing time, e.g. `2026-01-05T10:00:00+08:00`.
pub fn w3c(t: DateTime<Utc>) -> String {
    t.with_timezone(&shanghai())
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a W3C datetime (timezone required) or a bare date (midnight Beijing time). A `+`
/// the client forgot to percent-encode arrives as a space; it is put back.
pub fn parse_w3c(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    let fixed = raw.replace(' ', "+");
    for s in [raw, fixed.as_str()] {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_rfc3339(s) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let d = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    d.and_hms_opt(0, 0, 0)?
        .and_local_timezone(shanghai())
        .single()
        .map(|t| t.with_timezone(&Utc))
}

pub use minyi_core::pii::mask_numbers;

/// Classification's decision when it dispatched the ticket itself (not a guess awaiting a
/// dispatcher, not a duplicate).
fn dispatched_routing(t: &TicketRecord) -> Option<&RoutingRecord> {
    t.routing
        .as_ref()
        .filter(|r| (r.decision == "auto" || t.dispatch.is_some()) && r.duplicate_of.is_empty())
}

fn unit_name<'a>(catalog: &'a Catalog, code: &'a str) -> &'a str {
    catalog.units().get(code).map_or(code, |u| u.name.as_str())
}

/// The service code and name of a ticket: what the client chose (kept in the title, see
/// [`super::services::title_for`]), else what classification dispatched it under; empty
/// while Minyi is still deciding.
fn service_of(t: &TicketRecord) -> (&str, &str) {
    if let Some(code) = code_from_title(&t.title) {
        let name = t.title.split_once("] ").map_or("", |(_, name)| name);
        return (code, name);
    }
    match dispatched_routing(t) {
        Some(r) => (r.item_code.as_str(), r.item_name.as_str()),
        None => ("", ""),
    }
}

/// The service code of a ticket (for filtering).
pub fn service_code_of(t: &TicketRecord) -> &str {
    service_of(t).0
}

/// The handling record while a unit holds the ticket: not after the unit returned it (退回,
/// a dispatcher decides again) nor while arbitration decides who owns it (快裁).
fn held_by_unit(t: &TicketRecord) -> Option<&DispatchRecord> {
    t.dispatch.as_ref().filter(|d| {
        !matches!(
            d.state,
            DispatchState::Returned | DispatchState::Arbitration
        )
    })
}

/// The name of the unit leading a dispatched ticket; empty before dispatch, and while the
/// ticket has no owner (returned, or in arbitration).
fn agency_responsible(t: &TicketRecord, catalog: &Catalog) -> String {
    if t.dispatch.is_some() {
        return held_by_unit(t)
            .map(|d| unit_name(catalog, &d.lead_unit).to_owned())
            .unwrap_or_default();
    }
    let dispatched = matches!(
        t.status,
        TicketStatus::Dispatched
            | TicketStatus::Accepted
            | TicketStatus::Completed
            | TicketStatus::Archived
    );
    match t.routing.as_ref().filter(|_| dispatched) {
        Some(r) if !r.lead_unit.is_empty() => catalog
            .units()
            .get(&r.lead_unit)
            .map_or_else(|| r.lead_unit.clone(), |u| u.name.clone()),
        _ => String::new(),
    }
}

/// A ticket as a GeoReport service request. Caller fields are never read here. `catalog`
/// names the responsible unit.
pub fn request_node(t: &TicketRecord, catalog: &Catalog) -> Node {
    let (code, name) = service_of(t);
    let updated = updates_of(t, catalog)
        .iter()
        .map(|u| u.updated_datetime)
        .max()
        .unwrap_or(t.received_at);
    Node::Object(vec![
        ("service_request_id", Node::text(&t.tracking_number)),
        ("status", Node::text(open_or_closed(t.status))),
        ("status_notes", Node::text(status_notes(t.status))),
        ("service_name", Node::text(name)),
        ("service_code", Node::text(code)),
        ("description", Node::text(mask_numbers(&t.text))),
        (
            "agency_responsible",
            Node::text(agency_responsible(t, catalog)),
        ),
        ("service_notice", Node::text("")),
        ("requested_datetime", Node::text(w3c(t.received_at))),
        ("updated_datetime", Node::text(w3c(updated))),
        // The completion deadline: working days from dispatch on the official calendar,
        // moved by approved extensions; empty before dispatch and while no unit holds it.
        (
            "expected_datetime",
            Node::text(
                held_by_unit(t)
                    .and_then(|d| d.complete_by)
                    .map(w3c)
                    .unwrap_or_default(),
            ),
        ),
        ("address", Node::text(&t.address)),
        ("address_id", Node::text("")),
        ("zipcode", Node::text("")),
        ("lat", Node::opt_float(t.latitude)),
        ("long", Node::opt_float(t.longitude)),
        (
            "media_url",
            Node::text(t.attachment_urls.first().map_or("", String::as_str)),
        ),
    ])
}

/// One entry of the `servicerequestupdates` extension.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub update_id: String,
    pub service_request_id: String,
    pub status: &'static str,
    pub updated_datetime: DateTime<Utc>,
    pub description: String,
}

impl Update {
    pub fn node(&self) -> Node {
        Node::Object(vec![
            ("update_id", Node::text(&self.update_id)),
            ("service_request_id", Node::text(&self.service_request_id)),
            ("status", Node::text(self.status)),
            ("updated_datetime", Node::text(w3c(self.updated_datetime))),
            ("description", Node::text(&self.description)),
            ("media_url", Node::text("")),
        ])
    }
}

/// The updates a ticket can vouch for, oldest first: its receipt, classification's decision
/// (dispatched, waiting for a dispatcher, or linked to an earlier duplicate, which closes it),
/// each follow-up, and the handling milestones (manual dispatch, acceptance, each return,
/// each decided extension, arbitration and its ruling, completion), each with a stable id.
pub fn updates_of(t: &TicketRecord, catalog: &Catalog) -> Vec<Update> {
    let update = |n: usize, status, at, description: String| Update {
        update_id: format!("{}-{n}", t.tracking_number),
        service_request_id: t.tracking_number.clone(),
        status,
        updated_datetime: at,
        description,
    };
    let mut out = vec![update(0, "open", t.received_at, "已受理 Received".into())];
    // Ids stay stable as updates are added: 0 receipt, 1 routing, 2.. follow-ups.
    if let Some(r) = &t.routing
        && let Some(at) = r.routed_at
    {
        let (status, description) = if !r.duplicate_of.is_empty() {
            (
                "closed",
                status_notes(TicketStatus::LinkedDuplicate).to_owned(),
            )
        } else if r.decision == "auto" {
            let unit = catalog
                .units()
                .get(&r.lead_unit)
                .map_or(r.lead_unit.as_str(), |u| u.name.as_str());
            ("open", format!("已分拨至{unit} Sent to {unit}"))
        } else {
            (
                "open",
                status_notes(TicketStatus::NeedsDispatcher).to_owned(),
            )
        };
        out.push(update(1, status, at, description));
    }
    for (i, f) in t.follow_ups.iter().enumerate() {
        out.push(update(i + 2, "open", f.at, mask_numbers(&f.text)));
    }
    // Handling milestones, with their own stable ids (`{tracking}-d{n}`).
    if let Some(d) = &t.dispatch {
        let milestone = |n: usize, status, at, description: String| Update {
            update_id: format!("{}-d{n}", t.tracking_number),
            ..update(0, status, at, description)
        };
        let unit = unit_name(catalog, &d.lead_unit);
        if d.manual {
            out.push(milestone(
                0,
                "open",
                d.dispatched_at,
                format!("已分拨至{unit} Sent to {unit}"),
            ));
        }
        if let Some(at) = d.accepted_at {
            out.push(milestone(
                1,
                "open",
                at,
                format!("{unit}已签收，正在办理 Accepted by {unit}; in progress"),
            ));
        }
        if let Some(at) = d.completed_at {
            out.push(milestone(
                2,
                "closed",
                at,
                format!("已办结 Completed: {}", mask_numbers(&d.reply)),
            ));
        }
        let numbered = |kind: char, n: usize, at, description: String| Update {
            update_id: format!("{}-{kind}{n}", t.tracking_number),
            ..update(0, "open", at, description)
        };
        for (n, r) in d.returns.iter().enumerate() {
            let by = unit_name(catalog, &r.unit);
            out.push(numbered(
                'r',
                n,
                r.at,
                format!("{by}退回，等待重新分拨 Returned by {by}; waiting for a dispatcher"),
            ));
        }
        for (n, x) in d.extensions.iter().enumerate() {
            let (Some(approved), Some(at)) = (x.approved, x.decided_at) else {
                continue;
            };
            let description = if approved {
                format!(
                    "延期{0}个工作日已批准 Extension of {0} working days approved",
                    x.working_days
                )
            } else {
                "延期申请未获批准 Extension refused".to_owned()
            };
            out.push(numbered('x', n, at, description));
        }
        if let Some(a) = &d.arbitration {
            out.push(numbered(
                'a',
                0,
                a.escalated_at,
                status_notes(TicketStatus::InArbitration).to_owned(),
            ));
            if let Some(at) = a.decided_at {
                let owner = unit_name(catalog, &d.lead_unit);
                out.push(numbered(
                    'a',
                    1,
                    at,
                    format!("裁定由{owner}承办 Ruled: {owner} handles it"),
                ));
            }
        }
    }
    out.sort_by_key(|u| u.updated_datetime);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use minyi_catalog::Grade;

    fn params(p: &[(&str, &str)]) -> Params {
        Params(
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    fn no_core(_: &SubmissionInput) -> Violations {
        Violations::default()
    }

    fn fields(v: &Violations) -> Vec<&str> {
        v.0.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn a_full_report_becomes_a_submission() {
        let catalog = Catalog::demo();
        let item = catalog
            .items()
            .iter()
            .find(|i| i.grade == Grade::Normal)
            .unwrap();
        let p = params(&[
            ("service_code", &item.code),
            ("description", " 路灯不亮 "),
            ("lat", "22.75"),
            ("long", "113.93"),
            ("first_name", "小明"),
            ("last_name", "王"),
            ("phone", "13800138000"),
            ("email", "x@example.org"),
            ("media_url", "https://example.org/a.jpg"),
            ("attribute[report_url]", "https://example.org/r/1"),
        ]);
        let r = parse_report(&p, &catalog, "app-1", 200, no_core).unwrap();
        assert_eq!(r.service_code.as_deref(), Some(item.code.as_str()));
        assert_eq!(r.input.title, format!("[{}] {}", item.code, item.name));
        assert!(r.input.text.starts_with("路灯不亮\n\n"));
        assert!(r.input.text.contains("report_url: https://example.org/r/1"));
        assert!(!r.input.text.contains("13800138000"));
        assert!(!r.input.text.contains("example.org/a.jpg"));
        assert_eq!(r.input.point, Some((22.75, 113.93)));
        let caller = r.input.caller.unwrap();
        assert_eq!(caller.name, "王小明");
        assert_eq!(caller.phone, "13800138000");
        assert_eq!(r.input.attachment_urls, ["https://example.org/a.jpg"]);
        assert_eq!(r.input.channel, Channel::Open311.to_proto());
        assert!(r.input.idempotency_key.starts_with("open311:"));
    }

    #[test]
    fn every_bad_field_is_named_as_sent() {
        let catalog = Catalog::demo();
        let p = params(&[("service_code", "NOPE"), ("lat", "north"), ("long", "200")]);
        let err = parse_report(&p, &catalog, "app-1", 200, |_| {
            let mut v = Violations::default();
            v.add("location.point.longitude", "200 is out of range");
            v.add("caller.phone", "bad");
            v
        })
        .unwrap_err();
        assert_eq!(
            fields(&err),
            ["service_code", "description", "lat", "long", "phone"]
        );
    }

    #[test]
    fn a_lone_coordinate_out_of_range_is_named_with_the_missing_one() {
        let catalog = Catalog::demo();
        for (given, missing, message) in [
            ("lat", "long", "222 is out of range [-90, 90]"),
            ("long", "lat", "222 is out of range [-180, 180]"),
        ] {
            let p = params(&[("description", "路灯不亮"), (given, "222")]);
            let err = parse_report(&p, &catalog, "app-1", 200, no_core).unwrap_err();
            let text = format!("{err:?}");
            assert_eq!(fields(&err), [missing, given], "{text}");
            assert!(text.contains(message), "{text}");
        }
        let p = params(&[("description", "路灯不亮"), ("lat", "22.7")]);
        let err = parse_report(&p, &catalog, "app-1", 200, no_core).unwrap_err();
        assert_eq!(
            fields(&err),
            ["long"],
            "an in-range lone coordinate: only the missing one"
        );
    }

    #[test]
    fn a_location_is_required() {
        let catalog = Catalog::demo();
        let err = parse_report(
            &params(&[("description", "x")]),
            &catalog,
            "a",
            200,
            no_core,
        )
        .unwrap_err();
        assert_eq!(fields(&err), ["lat"]);
        let ok = parse_report(
            &params(&[("description", "x"), ("address_id", "A-17")]),
            &catalog,
            "a",
            200,
            no_core,
        )
        .unwrap();
        assert!(ok.input.text.contains("address_id: A-17"));
        let err = parse_report(
            &params(&[("description", "x"), ("lat", "22.7")]),
            &catalog,
            "a",
            200,
            no_core,
        )
        .unwrap_err();
        assert_eq!(fields(&err), ["long"]);
    }

    #[test]
    fn idempotency_keys_separate_fields() {
        let k = |s, d| idempotency_key(s, "", d, None, "", "");
        assert_ne!(k("ab", "c"), k("a", "bc"));
        assert_eq!(k("a", "b"), k("a", "b"));
        assert!(k("a", "b").len() <= 200);
        assert_ne!(
            idempotency_key("a", "", "b", Some((1.0, 2.0)), "", ""),
            idempotency_key("a", "", "b", Some((1.0, 2.5)), "", "")
        );
    }

    #[test]
    fn numbers_are_masked() {
        assert_eq!(mask_numbers("电话13800138000谢谢"), "电话138****8000谢谢");
        assert_eq!(
            mask_numbers("身份证11010519491231002X"),
            "身份证110***********002X"
        );
        assert_eq!(mask_numbers("3号楼 2026年 12345"), "3号楼 2026年 12345");
    }

    #[test]
    fn dates() {
        let t = parse_w3c("2026-01-05T10:00:00+08:00").unwrap();
        assert_eq!(w3c(t), "2026-01-05T10:00:00+08:00");
        assert_eq!(parse_w3c("2026-01-05T10:00:00 08:00"), Some(t));
        assert_eq!(parse_w3c("2026-01-05T02:00:00Z"), Some(t));
        assert_eq!(
            w3c(parse_w3c("2026-01-05").unwrap()),
            "2026-01-05T00:00:00+08:00"
        );
        assert_eq!(parse_w3c("yesterday"), None);
        assert_eq!(parse_w3c("2026-01-05T10:00:00"), None);
    }

    fn ticket(status: TicketStatus, routing: Option<RoutingRecord>) -> TicketRecord {
        let at = parse_w3c("2026-01-05T10:00:00+08:00").unwrap();
        TicketRecord {
            id: uuid::Uuid::now_v7(),
            tracking_number: "MY-20260105-000001".into(),
            status,
            channel: Channel::Open311,
            title: String::new(),
            text: "路灯不亮".into(),
            anonymous: true,
            caller_name: None,
            caller_phone: None,
            caller_id_number: None,
            address: String::new(),
            latitude: None,
            longitude: None,
            event_time: None,
            attachment_urls: vec![],
            idempotency_key: None,
            received_at: at,
            received_by: "app".into(),
            follow_ups: vec![],
            routing: routing.map(|mut r| {
                r.routed_at = Some(at + chrono::Duration::minutes(2));
                r
            }),
            dispatch: None,
            version: 0,
        }
    }

    fn field<'a>(n: &'a Node, key: &str) -> &'a Node {
        match n {
            Node::Object(f) => &f.iter().find(|(k, _)| *k == key).unwrap().1,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn dispatch_shows_the_unit_and_the_item() {
        let catalog = Catalog::demo();
        let item = &catalog.items()[0];
        let unit = catalog.units().units()[0].clone();
        let routed = RoutingRecord {
            decision: "auto".into(),
            item_code: item.code.clone(),
            item_name: item.name.clone(),
            lead_unit: unit.code.clone(),
            ..RoutingRecord::default()
        };
        let t = ticket(TicketStatus::Dispatched, Some(routed.clone()));
        let n = request_node(&t, &catalog);
        assert_eq!(field(&n, "agency_responsible"), &Node::text(&unit.name));
        assert_eq!(field(&n, "service_code"), &Node::text(&item.code));
        assert_eq!(
            field(&n, "updated_datetime"),
            &Node::text("2026-01-05T10:02:00+08:00")
        );
        let u = updates_of(&t, &catalog);
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].update_id, "MY-20260105-000001-1");
        assert!(u[1].description.contains(&unit.name));

        // Waiting for a dispatcher: the guess is not shown, nor a unit.
        let waiting = RoutingRecord {
            decision: "needs_dispatcher".into(),
            ..routed.clone()
        };
        let t = ticket(TicketStatus::NeedsDispatcher, Some(waiting));
        let n = request_node(&t, &catalog);
        assert_eq!(field(&n, "agency_responsible"), &Node::text(""));
        assert_eq!(field(&n, "service_code"), &Node::text(""));

        // A linked duplicate is closed, and its update says so.
        let dup = RoutingRecord {
            duplicate_of: uuid::Uuid::now_v7().to_string(),
            ..routed
        };
        let t = ticket(TicketStatus::LinkedDuplicate, Some(dup));
        let n = request_node(&t, &catalog);
        assert_eq!(field(&n, "status"), &Node::text("closed"));
        let u = updates_of(&t, &catalog);
        assert_eq!(u[1].status, "closed");
    }

    #[test]
    fn returns_extensions_and_arbitration_show_as_updates() {
        use minyi_core::store::{ArbitrationRecord, ExtensionRecord, ReturnRecord};
        let catalog = Catalog::demo();
        let unit = catalog.units().units()[0].clone();
        let at =
            |m: i64| parse_w3c("2026-01-05T10:00:00+08:00").unwrap() + chrono::Duration::minutes(m);
        let mut t = ticket(TicketStatus::Accepted, None);
        let mut d = DispatchRecord {
            state: DispatchState::Accepted,
            lead_unit: unit.code.clone(),
            co_handlers: vec![],
            manual: false,
            dispatched_by: String::new(),
            dispatched_at: at(5),
            accept_by: None,
            complete_by: Some(at(60 * 24 * 10)),
            deadline_estimated: false,
            accepted_at: Some(at(10)),
            completed_at: None,
            reply: String::new(),
            returns: vec![],
            progress: vec![],
            extensions: vec![ExtensionRecord {
                working_days: 3,
                reason: "材料".into(),
                requested_by: "h".into(),
                requested_at: at(20),
                approved: Some(true),
                decided_by: "d".into(),
                decided_at: Some(at(30)),
                note: String::new(),
            }],
            callback: None,
            redo_count: 0,
            no_return: false,
            arbitration: None,
            alerts: vec![],
            pauses: vec![],
        };
        t.dispatch = Some(d.clone());
        let n = request_node(&t, &catalog);
        assert_eq!(field(&n, "agency_responsible"), &Node::text(&unit.name));
        assert_eq!(
            field(&n, "expected_datetime"),
            &Node::text(w3c(at(60 * 24 * 10)))
        );
        let u = updates_of(&t, &catalog);
        let x = u.iter().find(|u| u.update_id.ends_with("-x0")).unwrap();
        assert!(x.description.contains('3'), "{}", x.description);

        // Returned: nobody holds it, so no agency and no deadline; the return is an update.
        d.state = DispatchState::Returned;
        d.returns.push(ReturnRecord {
            unit: unit.code.clone(),
            reason: "不属于本单位职责".into(),
            catalog_rule: String::new(),
            at: at(40),
        });
        t.status = TicketStatus::NeedsDispatcher;
        t.dispatch = Some(d.clone());
        let n = request_node(&t, &catalog);
        assert_eq!(field(&n, "agency_responsible"), &Node::text(""));
        assert_eq!(field(&n, "expected_datetime"), &Node::text(""));
        assert_eq!(field(&n, "updated_datetime"), &Node::text(w3c(at(40))));
        let r = updates_of(&t, &catalog);
        let r = r.iter().find(|u| u.update_id.ends_with("-r0")).unwrap();
        assert_eq!(r.status, "open");
        assert!(r.description.contains(&unit.name));

        // In arbitration, then ruled: the owner shows again.
        d.state = DispatchState::Arbitration;
        d.arbitration = Some(ArbitrationRecord {
            reason: "多次退回".into(),
            escalated_at: at(50),
            due: None,
            candidates: vec![],
            ruling: String::new(),
            decided_by: String::new(),
            decided_at: None,
            catalog_version: String::new(),
        });
        t.status = TicketStatus::InArbitration;
        t.dispatch = Some(d.clone());
        assert_eq!(
            field(&request_node(&t, &catalog), "agency_responsible"),
            &Node::text("")
        );
        d.state = DispatchState::Dispatched;
        if let Some(a) = d.arbitration.as_mut() {
            a.decided_at = Some(at(70));
        }
        t.status = TicketStatus::Dispatched;
        t.dispatch = Some(d);
        assert_eq!(
            field(&request_node(&t, &catalog), "agency_responsible"),
            &Node::text(&unit.name)
        );
        let ids: Vec<String> = updates_of(&t, &catalog)
            .into_iter()
            .map(|u| u.update_id)
            .collect();
        assert!(
            ["-a0", "-a1", "-r0", "-x0", "-d1"]
                .iter()
                .all(|s| ids.iter().any(|id| id.ends_with(s))),
            "{ids:?}"
        );
    }

    #[test]
    fn statuses() {
        for s in TicketStatus::ALL {
            let closed = matches!(
                s,
                TicketStatus::Completed | TicketStatus::Archived | TicketStatus::LinkedDuplicate
            );
            assert_eq!(open_or_closed(s), if closed { "closed" } else { "open" });
            assert!(!status_notes(s).is_empty());
        }
    }
}
