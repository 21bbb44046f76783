//! Petitions and their validation.
//!
//! A submission is parsed into a [`NewPetition`] or rejected with *every* bad field listed
//! ([`Violations`]), so a call-centre agent can fix them all at once.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a petition came in. Mirrors `minyi.common.v1.Channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Hotline,
    App,
    Web,
    Wechat,
    Letter,
    WalkIn,
    Open311,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Hotline,
        Channel::App,
        Channel::Web,
        Channel::Wechat,
        Channel::Letter,
        Channel::WalkIn,
        Channel::Open311,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Hotline => "hotline",
            Channel::App => "app",
            Channel::Web => "web",
            Channel::Wechat => "wechat",
            Channel::Letter => "letter",
            Channel::WalkIn => "walk_in",
            Channel::Open311 => "open311",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim().to_ascii_lowercase())
    }

    pub fn from_proto(value: i32) -> Option<Channel> {
        // Values follow the proto enum; 0 (unspecified) is not a channel.
        Channel::ALL
            .get(usize::try_from(value).ok()?.checked_sub(1)?)
            .copied()
    }

    pub fn to_proto(self) -> i32 {
        Channel::ALL.iter().position(|c| *c == self).unwrap_or(0) as i32 + 1
    }
}

/// The coarse life-cycle state of a ticket. Mirrors `minyi.common.v1.TicketStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Received,
    NeedsDispatcher,
    Dispatched,
    Accepted,
    Completed,
    Archived,
    LinkedDuplicate,
    /// Classified with confidence; the dispatch service has not assigned it yet.
    Routed,
    /// A hard ticket waiting for an arbitrator (快裁).
    InArbitration,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 9] = [
        TicketStatus::Received,
        TicketStatus::NeedsDispatcher,
        TicketStatus::Dispatched,
        TicketStatus::Accepted,
        TicketStatus::Completed,
        TicketStatus::Archived,
        TicketStatus::LinkedDuplicate,
        TicketStatus::Routed,
        TicketStatus::InArbitration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Received => "received",
            TicketStatus::NeedsDispatcher => "needs_dispatcher",
            TicketStatus::Dispatched => "dispatched",
            TicketStatus::Accepted => "accepted",
            TicketStatus::Completed => "completed",
            TicketStatus::Archived => "archived",
            TicketStatus::LinkedDuplicate => "linked_duplicate",
            TicketStatus::Routed => "routed",
            TicketStatus::InArbitration => "in_arbitration",
        }
    }

    pub fn parse(s: &str) -> Option<TicketStatus> {
        TicketStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn from_proto(value: i32) -> Option<TicketStatus> {
        TicketStatus::ALL
            .get(usize::try_from(value).ok()?.checked_sub(1)?)
            .copied()
    }

    pub fn to_proto(self) -> i32 {
        TicketStatus::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(0) as i32
            + 1
    }

    /// Open tickets still accept follow-up information from the citizen.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            TicketStatus::Completed | TicketStatus::Archived | TicketStatus::LinkedDuplicate
        )
    }
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// All the bad fields of a request. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Limits that operators may tune.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntakeLimits {
    /// Maximum petition text length in characters (not bytes).
    pub max_text_chars: usize,
    pub max_title_chars: usize,
    pub max_attachments: usize,
    /// Follow-ups one ticket takes, and their characters together: a ticket travels whole in
    /// one gRPC message, which clients accept up to 4 MiB by default.
    pub max_follow_ups: usize,
    pub max_follow_up_chars: usize,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        Self {
            max_text_chars: 20_000,
            max_title_chars: 200,
            max_attachments: 20,
            max_follow_ups: 100,
            max_follow_up_chars: 200_000,
        }
    }
}

/// A caller as submitted, before sealing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallerInput {
    pub anonymous: bool,
    pub name: String,
    pub phone: String,
    pub id_number: String,
}

/// A submission as received, before validation.
#[derive(Debug, Clone, Default)]
pub struct SubmissionInput {
    /// Raw proto channel value (0 = unspecified).
    pub channel: i32,
    pub text: String,
    pub title: String,
    pub caller: Option<CallerInput>,
    pub address: String,
    pub point: Option<(f64, f64)>,
    pub event_time: Option<DateTime<Utc>>,
    pub attachment_urls: Vec<String>,
    pub idempotency_key: String,
}

/// Personal data of a caller that passed validation, in the clear.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CallerPii {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub id_number: Option<String>,
}

impl fmt::Debug for CallerPii {
    // Personal data must never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerPii")
            .field("name", &self.name.as_ref().map(|_| "<redacted>"))
            .field("phone", &self.phone.as_ref().map(|_| "<redacted>"))
            .field("id_number", &self.id_number.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A validated petition.
#[derive(Debug, Clone)]
pub struct NewPetition {
    pub channel: Channel,
    pub text: String,
    pub title: String,
    pub anonymous: bool,
    pub caller: CallerPii,
    pub address: String,
    pub point: Option<(f64, f64)>,
    pub event_time: Option<DateTime<Utc>>,
    pub attachment_urls: Vec<String>,
    pub idempotency_key: Option<String>,
}

impl NewPetition {
    /// Validates a submission, reporting every bad field.
    pub fn parse(
        input: SubmissionInput,
        limits: &IntakeLimits,
        now: DateTime<Utc>,
    ) -> Result<NewPetition, Violations> {
        let mut v = Violations::default();
        let channel = Channel::from_proto(input.channel);
        if channel.is_none() {
            v.add(
                "channel",
                format!(
                    "unknown channel {}; expected one of {}",
                    input.channel,
                    Channel::ALL.map(Channel::as_str).join(", ")
                ),
            );
        }
        let text = input.text.trim().to_owned();
        let text_chars = text.chars().count();
        if text.is_empty() {
            v.add("text", "must not be empty");
        } else if text_chars > limits.max_text_chars {
            v.add(
                "text",
                format!(
                    "is {text_chars} characters; the limit is {}",
                    limits.max_text_chars
                ),
            );
        }
        let title = input.title.trim().to_owned();
        if title.chars().count() > limits.max_title_chars {
            v.add(
                "title",
                format!("longer than {} characters", limits.max_title_chars),
            );
        }
        let caller_input = input.caller.unwrap_or(CallerInput {
            anonymous: true,
            ..CallerInput::default()
        });
        let mut caller = CallerPii::default();
        let name = caller_input.name.trim();
        let phone = caller_input.phone.trim();
        let id_number = caller_input.id_number.trim();
        let anonymous =
            caller_input.anonymous || (name.is_empty() && phone.is_empty() && id_number.is_empty());
        if caller_input.anonymous && !(name.is_empty() && phone.is_empty() && id_number.is_empty())
        {
            v.add(
                "caller.anonymous",
                "an anonymous petition must not carry a name, phone or ID number",
            );
        }
        if !name.is_empty() {
            if name.chars().count() > 50 {
                v.add("caller.name", "longer than 50 characters");
            }
            caller.name = Some(name.to_owned());
        }
        if !phone.is_empty() {
            match normalize_phone(phone) {
                Some(p) => caller.phone = Some(p),
                None => v.add(
                    "caller.phone",
                    "not a valid phone number (mobile: 11 digits starting with 1; landline: area code and number)",
                ),
            }
        }
        if !id_number.is_empty() {
            if let Err(why) = check_id_number(id_number) {
                v.add("caller.id_number", why);
            } else {
                caller.id_number = Some(id_number.to_ascii_uppercase());
            }
        }
        let address = input.address.trim().to_owned();
        if address.chars().count() > 500 {
            v.add("location.address", "longer than 500 characters");
        }
        if let Some((lat, lon)) = input.point {
            if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
                v.add(
                    "location.point.latitude",
                    format!("{lat} is out of range [-90, 90]"),
                );
            }
            if !(lon.is_finite() && (-180.0..=180.0).contains(&lon)) {
                v.add(
                    "location.point.longitude",
                    format!("{lon} is out of range [-180, 180]"),
                );
            }
        }
        if let Some(t) = input.event_time
            && t > now + chrono::Duration::minutes(10)
        {
            v.add("event_time", "is in the future");
        }
        if input.attachment_urls.len() > limits.max_attachments {
            v.add(
                "attachment_urls",
                format!("more than {} attachments", limits.max_attachments),
            );
        }
        for (i, url) in input.attachment_urls.iter().enumerate() {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 2048
                && !url.chars().any(char::is_whitespace);
            if !ok {
                v.add(
                    &format!("attachment_urls[{i}]"),
                    "must be an http(s) URL without spaces, at most 2048 characters",
                );
            }
        }
        let key = input.idempotency_key.trim();
        if key.len() > 200 {
            v.add("idempotency_key", "longer than 200 bytes");
        }
        let Some(channel) = channel else {
            return Err(v);
        };
        v.into_result(NewPetition {
            channel,
            text,
            title,
            anonymous,
            caller,
            address,
            point: input.point,
            event_time: input.event_time,
            attachment_urls: input.attachment_urls,
            idempotency_key: (!key.is_empty()).then(|| key.to_owned()),
        })
    }
}

/// Normalizes a mainland phone number: mobile `1[3-9]xxxxxxxxx` (an optional +86/86 prefix is
/// dropped) or a landline `0AA(A)-NNNNNNN(N)`; a bare 7-8 digit local number is accepted too.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact
        .strip_prefix("+86")
        .or_else(|| compact.strip_prefix("0086"))
        .unwrap_or(&compact);
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = if digits.len() == 13 && digits.starts_with("861") {
        &digits[2..]
    } else {
        digits
    };
    let b = digits.as_bytes();
    match b.len() {
        11 if b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) => Some(digits.to_owned()),
        10..=12 if b[0] == b'0' && b[1] != b'0' => Some(digits.to_owned()),
        7 | 8 if b[0] != b'0' => Some(digits.to_owned()),
        _ => None,
    }
}

/// Checks an 18-digit resident identity number (GB 11643-1999): digits, a plausible birth
/// date, and the ISO 7064 MOD 11-2 check character.
pub fn check_id_number(raw: &str) -> Result<(), String> {
    let id = raw.to_ascii_uppercase();
    let b = id.as_bytes();
    if b.len() != 18 {
        return Err(format!("must be 18 characters, got {}", id.chars().count()));
    }
    if !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
        return Err("must be 17 digits followed by a digit or X".into());
    }
    let birth = &id[6..14];
    if chrono::NaiveDate::parse_from_str(birth, "%Y%m%d").is_err() {
        return Err(format!("birth date {birth} is not a real date"));
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let expected = CHECK[(sum % 11) as usize];
    if b[17] != expected {
        // The expected digit is not echoed: error messages may be logged.
        return Err("check digit does not match (mistyped digit?)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SubmissionInput {
        SubmissionInput {
            channel: Channel::Hotline.to_proto(),
            text: "小区门口垃圾堆积三天无人清理".into(),
            ..SubmissionInput::default()
        }
    }

    fn parse(i: SubmissionInput) -> Result<NewPetition, Violations> {
        NewPetition::parse(i, &IntakeLimits::default(), Utc::now())
    }

    fn fields(v: &Violations) -> Vec<&str> {
        v.0.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn a_minimal_petition_is_anonymous() {
        let p = parse(input()).unwrap();
        assert!(p.anonymous);
        assert_eq!(p.channel, Channel::Hotline);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut i = input();
        i.channel = 0;
        i.text = "   ".into();
        i.caller = Some(CallerInput {
            phone: "12345".into(),
            id_number: "110101199003071234".into(),
            ..CallerInput::default()
        });
        i.point = Some((91.0, 200.0));
        i.attachment_urls = vec!["ftp://x".into()];
        let err = parse(i).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                "channel",
                "text",
                "caller.phone",
                "caller.id_number",
                "location.point.latitude",
                "location.point.longitude",
                "attachment_urls[0]"
            ]
        );
    }

    #[test]
    fn oversized_text_is_measured_in_characters() {
        let mut i = input();
        i.text = "字".repeat(20_000);
        assert!(parse(i.clone()).is_ok());
        i.text.push('字');
        let err = parse(i).unwrap_err();
        assert_eq!(fields(&err), ["text"]);
        assert!(err.0[0].description.contains("20001"));
    }

    #[test]
    fn id_number_check_digit() {
        // A well-known valid sample number (GB 11643 example).
        assert!(check_id_number("11010519491231002X").is_ok());
        assert!(check_id_number("11010519491231002x").is_ok());
        assert!(check_id_number("110105194912310021").is_err());
        assert!(check_id_number("110105194913310028").is_err()); // month 13
        assert!(check_id_number("1101051949").is_err());
    }

    #[test]
    fn phones() {
        assert_eq!(
            normalize_phone("138 0013 8000").as_deref(),
            Some("13800138000")
        );
        assert_eq!(
            normalize_phone("+8613800138000").as_deref(),
            Some("13800138000")
        );
        assert_eq!(
            normalize_phone("0755-23456789").as_deref(),
            Some("075523456789")
        );
        assert_eq!(normalize_phone("12800138000"), None);
        assert_eq!(normalize_phone("1380013800a"), None);
        assert_eq!(normalize_phone(""), None);
    }

    #[test]
    fn anonymous_with_identity_is_contradictory() {
        let mut i = input();
        i.caller = Some(CallerInput {
            anonymous: true,
            phone: "13800138000".into(),
            ..CallerInput::default()
        });
        assert_eq!(fields(&parse(i).unwrap_err()), ["caller.anonymous"]);
    }

    #[test]
    fn channel_proto_roundtrip() {
        for c in Channel::ALL {
            assert_eq!(Channel::from_proto(c.to_proto()), Some(c));
        }
        assert_eq!(Channel::from_proto(0), None);
        assert_eq!(Channel::from_proto(99), None);
        for s in TicketStatus::ALL {
            assert_eq!(TicketStatus::from_proto(s.to_proto()), Some(s));
        }
    }
}
