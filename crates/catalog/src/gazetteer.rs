//! Location resolution: address text or WGS84 coordinates → street (and community) of 光明区.
//!
//! Text is matched against a gazetteer of street, community, road and landmark names; the
//! longest name found in the text wins. Coordinates are tested against community polygons.
//! Resolution never guesses: equal-length matches naming different streets, overlapping
//! polygons, or nothing at all give [`Resolution::Unresolved`], and the caller (a human
//! dispatcher, or arbitration's territorial fallback) decides.
//!
//! The built-in [`Gazetteer::guangming`] is **demo data**: community names are those of
//! [`crate::units`]; landmark and road assignments are approximate; the polygons are rough
//! rectangles laid over the district's bounding box (22.70-22.83 N, 113.85-113.99 E) in the
//! streets' relative positions, not surveyed boundaries.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::units::{COMMUNITIES, STREETS, community_code};

/// A named place: a street, community, road or landmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// The name as it appears in addresses.
    pub name: String,
    /// Street unit code.
    pub street: String,
    /// Community unit code, when the place lies within one community.
    pub community: Option<String>,
}

/// The polygon of a community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Area {
    /// Street unit code.
    pub street: String,
    /// Community unit code.
    pub community: String,
    /// Vertices as (lat, lon) in WGS84, in order; the ring closes implicitly.
    pub polygon: Vec<(f64, f64)>,
}

/// How a location was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// From address text.
    Text,
    /// From coordinates.
    Coordinates,
    /// From places the petition's own text names (no address was given).
    Message,
}

/// Why a location could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnresolvedReason {
    /// No known name in the text.
    NoMatch,
    /// Equally good matches in different streets (their codes, sorted).
    Ambiguous(Vec<String>),
    /// The point lies outside every polygon.
    Outside,
    /// Latitude/longitude not finite or out of range.
    InvalidCoordinates,
}

/// Result of location resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Resolution {
    /// The street is known, and the community when the evidence names exactly one.
    Resolved {
        /// Street unit code.
        street: String,
        /// Community unit code.
        community: Option<String>,
        /// What the resolution was based on.
        via: Via,
    },
    /// Nothing certain could be said.
    Unresolved {
        /// Why.
        reason: UnresolvedReason,
    },
}

impl Resolution {
    /// The street code, if resolved.
    pub fn street(&self) -> Option<&str> {
        match self {
            Resolution::Resolved { street, .. } => Some(street),
            Resolution::Unresolved { .. } => None,
        }
    }

    /// The community code, if resolved to one.
    pub fn community(&self) -> Option<&str> {
        match self {
            Resolution::Resolved { community, .. } => community.as_deref(),
            Resolution::Unresolved { .. } => None,
        }
    }

    /// Whether the location was resolved.
    pub fn is_resolved(&self) -> bool {
        matches!(self, Resolution::Resolved { .. })
    }

    fn unresolved(reason: UnresolvedReason) -> Self {
        Resolution::Unresolved { reason }
    }
}

/// Names and polygons of a district.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Gazetteer {
    places: Vec<Place>,
    areas: Vec<Area>,
}

/// Bare community names (without 社区) distinctive enough to match on their own. Names that
/// are also common words or other places' names (光明, 红星, 石家 as in 石家庄, 新庄 …) are left
/// out, and bare 马田/公明/凤凰 mean the street, not the community.
const BARE_COMMUNITY_NAMES: &[&str] = &[
    "碧眼",
    "东周",
    "白花",
    "新陂头",
    "上村",
    "下村",
    "李松蓢",
    "西田",
    "楼村",
    "新羌",
    "圳美",
    "东坑",
    "甲子塘",
    "塘家",
    "塘尾",
    "长圳",
    "田寮",
    "玉律",
    "合水口",
    "马山头",
    "将石",
    "薯田埔",
];

/// Roads and landmarks: (name, street, community suffix or ""). Approximate, for the demo.
const LANDMARKS: &[(&str, &str, &str)] = &[
    ("光明大街", "ST-GM", "GUANGMING"),
    ("光明农场", "ST-GM", ""),
    ("碧眼村", "ST-GM", "BIYAN"),
    ("白花洞", "ST-GM", "BAIHUA"),
    ("虹桥公园", "ST-GM", ""),
    ("大顶岭", "ST-GM", ""),
    ("公明广场", "ST-GOM", "GONGMING"),
    ("公明老街", "ST-GOM", "GONGMING"),
    ("光明湖", "ST-GOM", ""),
    ("莲塘工业区", "ST-GOM", "SHANGCUN"),
    ("李松朗", "ST-GOM", "LISONGLANG"),
    ("西田村", "ST-GOM", "XITIAN"),
    ("楼村湿地公园", "ST-XH", "LOUCUN"),
    ("楼村二路", "ST-XH", "LOUCUN"),
    ("新羌工业区", "ST-XH", "XINQIANG"),
    ("华星光电", "ST-FH", "TANGJIA"),
    ("光明城站", "ST-FH", "DONGKENG"),
    ("光明文化艺术中心", "ST-FH", "FENGHUANG"),
    ("凤凰城", "ST-FH", "FENGHUANG"),
    ("甲子塘工业区", "ST-FH", "JIAZITANG"),
    ("长圳公共住房", "ST-YT", "CHANGZHEN"),
    ("田寮工业区", "ST-YT", "TIANLIAO"),
    ("玉律村", "ST-YT", "YULV"),
    ("合水口工业区", "ST-MT", "HESHUIKOU"),
    ("马山头工业区", "ST-MT", "MASHANTOU"),
    ("将石村", "ST-MT", "JIANGSHI"),
];

/// Characters of a petition's text that [`Gazetteer::resolve_message`] reads.
pub const MESSAGE_CHARS: usize = 1_000;

/// Demo bounding boxes of the streets: (street, lat_min, lat_max, lon_min, lon_max).
const STREET_BOXES: &[(&str, f64, f64, f64, f64)] = &[
    ("ST-GOM", 22.76, 22.83, 113.85, 113.90),
    ("ST-MT", 22.70, 22.76, 113.85, 113.90),
    ("ST-XH", 22.77, 22.83, 113.90, 113.94),
    ("ST-YT", 22.70, 22.77, 113.90, 113.94),
    ("ST-GM", 22.76, 22.83, 113.94, 113.99),
    ("ST-FH", 22.70, 22.76, 113.94, 113.99),
];

impl Gazetteer {
    /// A gazetteer from explicit places and areas.
    pub fn new(places: Vec<Place>, areas: Vec<Area>) -> Self {
        Gazetteer { places, areas }
    }

    /// The demo gazetteer of 光明区 (see the module docs).
    pub fn guangming() -> Self {
        let mut places = Vec::new();
        let place = |name: String, street: &str, community: Option<String>| Place {
            name,
            street: street.to_string(),
            community,
        };
        for &(code, name) in STREETS {
            places.push(place(name.to_string(), code, None));
            let bare = name.trim_end_matches("街道");
            if bare != "光明" {
                places.push(place(bare.to_string(), code, None));
            }
        }
        for &(street, suffix, name, _) in COMMUNITIES {
            let cm = community_code(street, suffix);
            places.push(place(format!("{name}社区"), street, Some(cm.clone())));
            if BARE_COMMUNITY_NAMES.contains(&name) {
                places.push(place(name.to_string(), street, Some(cm)));
            }
        }
        for &(name, street, suffix) in LANDMARKS {
            let cm = (!suffix.is_empty()).then(|| community_code(street, suffix));
            places.push(place(name.to_string(), street, cm));
        }

        let mut areas = Vec::new();
        for &(street, lat0, lat1, lon0, lon1) in STREET_BOXES {
            let cms: Vec<&str> = COMMUNITIES
                .iter()
                .filter(|c| c.0 == street)
                .map(|c| c.1)
                .collect();
            let n = cms.len().max(1) as f64;
            // Communities are vertical strips of the street's box, west to east.
            for (i, suffix) in cms.iter().enumerate() {
                let a = lon0 + (lon1 - lon0) * i as f64 / n;
                let b = lon0 + (lon1 - lon0) * (i + 1) as f64 / n;
                areas.push(Area {
                    street: street.to_string(),
                    community: community_code(street, suffix),
                    polygon: vec![(lat0, a), (lat0, b), (lat1, b), (lat1, a)],
                });
            }
        }
        Gazetteer { places, areas }
    }

    /// The named places.
    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// The community polygons.
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// Resolves address text by longest match. Among the longest matches, all must name the
    /// same street; the community is kept only when exactly one community is named.
    pub fn resolve_text(&self, text: &str) -> Resolution {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut best_len = 0usize;
        let mut best: Vec<&Place> = Vec::new();
        for p in &self.places {
            if p.name.is_empty() || !text.contains(p.name.as_str()) {
                continue;
            }
            let len = p.name.chars().count();
            if len > best_len {
                best_len = len;
                best.clear();
            }
            if len == best_len {
                best.push(p);
            }
        }
        resolve_candidates(
            best.into_iter().map(|p| (&p.street, &p.community)),
            Via::Text,
        )
    }

    /// Resolves a petition's own text, for a ticket that came without an address: stricter
    /// than [`Gazetteer::resolve_text`], since a message may mention places other than the
    /// matter's. Every place named (a name inside a longer one found at the same spot does
    /// not count: 楼村 in 楼村湿地公园) must lie in one street; the community is kept when
    /// exactly one is named. Only the first [`MESSAGE_CHARS`] characters are read (where a
    /// petition says where; the classifier reads as many). Returns the resolution and the
    /// names found, in text order.
    pub fn resolve_message(&self, text: &str) -> (Resolution, Vec<String>) {
        let text: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(MESSAGE_CHARS)
            .collect();
        // Every occurrence as a byte span, longest first so that nested ones can be dropped.
        let mut spans: Vec<(usize, usize, &Place)> = Vec::new();
        for p in &self.places {
            if p.name.is_empty() {
                continue;
            }
            for (at, _) in text.match_indices(p.name.as_str()) {
                spans.push((at, at + p.name.len(), p));
            }
        }
        spans.sort_by_key(|&(a, b, _)| (std::cmp::Reverse(b - a), a));
        let mut kept: Vec<(usize, usize, &Place)> = Vec::new();
        for span @ (a, b, _) in spans {
            if !kept.iter().any(|&(ka, kb, _)| ka <= a && b <= kb) {
                kept.push(span);
            }
        }
        kept.sort_by_key(|&(a, _, _)| a);
        let mut names: Vec<String> = Vec::new();
        for (_, _, p) in &kept {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
        let r = resolve_candidates(
            kept.iter().map(|(_, _, p)| (&p.street, &p.community)),
            Via::Message,
        );
        (r, names)
    }

    /// Resolves a WGS84 point by point-in-polygon over the community areas.
    pub fn resolve_point(&self, lat: f64, lon: f64) -> Resolution {
        if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 || lon.abs() > 180.0 {
            return Resolution::unresolved(UnresolvedReason::InvalidCoordinates);
        }
        let hits: Vec<&Area> = self
            .areas
            .iter()
            .filter(|a| contains(&a.polygon, lat, lon))
            .collect();
        if hits.is_empty() {
            return Resolution::unresolved(UnresolvedReason::Outside);
        }
        let communities: BTreeSet<&str> = hits.iter().map(|a| a.community.as_str()).collect();
        let streets: BTreeSet<&str> = hits.iter().map(|a| a.street.as_str()).collect();
        match (streets.len(), communities.len()) {
            (1, n) => Resolution::Resolved {
                street: hits[0].street.clone(),
                community: (n == 1).then(|| hits[0].community.clone()),
                via: Via::Coordinates,
            },
            _ => Resolution::unresolved(UnresolvedReason::Ambiguous(
                streets.into_iter().map(str::to_string).collect(),
            )),
        }
    }

    /// Resolves from whatever the ticket has. Text wins when it resolves (it names the place
    /// of the matter, while a phone's coordinates may be where the caller stands); otherwise
    /// the coordinates are tried; an ambiguous text stays unresolved only if the point does too.
    pub fn resolve(&self, text: Option<&str>, point: Option<(f64, f64)>) -> Resolution {
        let by_text = text.map(|t| self.resolve_text(t));
        if let Some(r @ Resolution::Resolved { .. }) = &by_text {
            return r.clone();
        }
        if let Some((lat, lon)) = point {
            let r = self.resolve_point(lat, lon);
            if r.is_resolved() {
                return r;
            }
            if by_text.is_none() {
                return r;
            }
        }
        by_text.unwrap_or(Resolution::unresolved(UnresolvedReason::NoMatch))
    }
}

fn resolve_candidates<'a>(
    matches: impl Iterator<Item = (&'a String, &'a Option<String>)>,
    via: Via,
) -> Resolution {
    let mut streets = BTreeSet::new();
    let mut communities = BTreeSet::new();
    for (street, community) in matches {
        streets.insert(street.as_str());
        if let Some(c) = community {
            communities.insert(c.as_str());
        }
    }
    match streets.len() {
        0 => Resolution::unresolved(UnresolvedReason::NoMatch),
        1 => Resolution::Resolved {
            street: streets.first().map(|s| s.to_string()).unwrap_or_default(),
            community: if communities.len() == 1 {
                communities.first().map(|c| c.to_string())
            } else {
                None
            },
            via,
        },
        _ => Resolution::unresolved(UnresolvedReason::Ambiguous(
            streets.into_iter().map(str::to_string).collect(),
        )),
    }
}

/// Even-odd ray casting. Half-open in both axes, so a point on an edge shared by two
/// polygons falls in exactly one of them.
fn contains(polygon: &[(f64, f64)], lat: f64, lon: f64) -> bool {
    let n = polygon.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (yi, xi) = polygon[i];
        let (yj, xj) = polygon[j];
        if (yi > lat) != (yj > lat) {
            let x_cross = xi + (lat - yi) * (xj - xi) / (yj - yi);
            if lon < x_cross {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_resolves_only_when_every_place_it_names_is_in_one_street() {
        let g = Gazetteer::guangming();
        let (r, names) = g.resolve_message("你好，在长圳公共住房42号旁边，垃圾很多");
        assert_eq!(r.street(), Some("ST-YT"));
        assert_eq!(names, ["长圳公共住房"]);
        // A name inside a longer one at the same spot does not count on its own.
        let (r, names) = g.resolve_message("楼村湿地公园的路灯坏了");
        assert_eq!(r.street(), Some("ST-XH"));
        assert_eq!(names, ["楼村湿地公园"]);
        // Two places in two streets: no street, whatever their lengths.
        let (r, names) = g.resolve_message("我住凤凰城，在长圳公共住房上班，路上井盖缺失");
        assert!(!r.is_resolved(), "{r:?}");
        assert_eq!(names, ["凤凰城", "长圳公共住房"]);
        let (r, names) = g.resolve_message("路灯坏了很久");
        assert_eq!(r, Resolution::unresolved(UnresolvedReason::NoMatch));
        assert!(names.is_empty());
        // Only the beginning is read: a place far down a long text, or a name repeated
        // thousands of times, costs no more than a normal petition.
        let far = format!("{}凤凰城", "路".repeat(MESSAGE_CHARS));
        assert!(!g.resolve_message(&far).0.is_resolved());
        let (r, names) = g.resolve_message(&"楼村湿地公园".repeat(20_000));
        assert_eq!(
            (r.street(), names[0].as_str()),
            (Some("ST-XH"), "楼村湿地公园")
        );
    }

    #[test]
    fn ray_casting_concave() {
        // An L shape: the notch at the top right is outside.
        let l = [
            (0.0, 0.0),
            (0.0, 2.0),
            (1.0, 2.0),
            (1.0, 1.0),
            (2.0, 1.0),
            (2.0, 0.0),
        ];
        assert!(contains(&l, 0.5, 0.5));
        assert!(contains(&l, 0.5, 1.5));
        assert!(contains(&l, 1.5, 0.5));
        assert!(!contains(&l, 1.5, 1.5));
        assert!(!contains(&l, 3.0, 0.5));
    }
}
