//! 热点 hotspots: clusters of similar petitions from the same community within a few days.
//!
//! Two petitions of one community are linked when they were received at most `window_days`
//! apart and their texts are similar (the similarity classification uses to link duplicates,
//! [`minyi_classification::duplicates::similarity`], on the texts without digits), or when one
//! was linked to the other as its duplicate. Clusters are the connected groups; they rank by size, then by recency.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use minyi_classification::duplicates::similarity;
use serde::Serialize;
use uuid::Uuid;

use crate::facts::Fact;
use crate::figures::{EXCERPT_CHARS, Names};
use crate::filter::{FieldError, Filter};
use crate::model::ReadModel;

/// Longest look-back a request may ask for.
pub const MAX_DAYS: i64 = 30;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotspotQuery {
    /// Petitions received in the last `days` days (ending at the filter's end, or now).
    pub days: i64,
    /// At most this many days between two linked petitions.
    pub window_days: i64,
    /// Text similarity (0-1) from which two petitions are linked.
    pub threshold: f64,
    /// Smallest cluster shown.
    pub min_size: usize,
    /// Most clusters returned.
    pub limit: usize,
}

impl Default for HotspotQuery {
    fn default() -> Self {
        Self {
            days: 7,
            window_days: 3,
            threshold: 0.5,
            min_size: 2,
            limit: 20,
        }
    }
}

impl HotspotQuery {
    /// Reads `days`, `window_days`, `threshold`, `min_size` and `limit` from query pairs.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<HotspotQuery, Vec<FieldError>> {
        let mut q = HotspotQuery::default();
        let mut errors = Vec::new();
        for (k, v) in pairs {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let mut bad = |d: String| {
                errors.push(FieldError {
                    field: k.to_owned(),
                    description: d,
                })
            };
            match k {
                "days" => match v.parse::<i64>() {
                    Ok(n) if (1..=MAX_DAYS).contains(&n) => q.days = n,
                    _ => bad(format!("must be a whole number from 1 to {MAX_DAYS}")),
                },
                "window_days" => match v.parse::<i64>() {
                    Ok(n) if (0..=MAX_DAYS).contains(&n) => q.window_days = n,
                    _ => bad(format!("must be a whole number from 0 to {MAX_DAYS}")),
                },
                "threshold" => match v.parse::<f64>() {
                    Ok(t) if (0.05..=1.0).contains(&t) => q.threshold = t,
                    _ => bad("must be a number from 0.05 to 1".into()),
                },
                "min_size" => match v.parse::<usize>() {
                    Ok(n) if (2..=1000).contains(&n) => q.min_size = n,
                    _ => bad("must be a whole number from 2 to 1000".into()),
                },
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=200).contains(&n) => q.limit = n,
                    _ => bad("must be a whole number from 1 to 200".into()),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(errors)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotspotTicket {
    pub id: Uuid,
    pub tracking_number: String,
    pub excerpt: String,
    pub received_at: DateTime<Utc>,
    pub status: String,
    pub lead_unit: String,
    pub lead_unit_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hotspot {
    pub rank: u32,
    pub community: String,
    pub community_name: String,
    pub street: String,
    pub street_name: String,
    pub size: u64,
    /// Still with a unit or waiting for one.
    pub open: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// The most frequent major category and catalog item.
    pub category: String,
    pub item_name: String,
    /// The earliest petition's excerpt.
    pub label: String,
    /// Newest first.
    pub tickets: Vec<HotspotTicket>,
}

/// Pairwise similarities already computed: texts never change, so each pair is computed once.
#[derive(Debug, Default)]
pub struct SimilarityCache {
    pairs: Mutex<HashMap<(Uuid, Uuid), f32>>,
}

/// Entries kept before the cache starts over (a few MB).
const CACHE_LIMIT: usize = 500_000;

impl SimilarityCache {
    fn get(&self, a: &Fact, b: &Fact) -> f64 {
        let key = if a.id < b.id {
            (a.id, b.id)
        } else {
            (b.id, a.id)
        };
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = pairs.get(&key) {
            return f64::from(*s);
        }
        let s = similarity(&gist(&a.text), &gist(&b.text));
        if pairs.len() >= CACHE_LIMIT {
            pairs.clear();
        }
        pairs.insert(key, s as f32);
        s
    }
}

/// What two texts are compared on: without digits (phone numbers, masked or not, say nothing
/// about the matter and would pull similar complaints apart).
fn gist(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The ranked hotspots among the tickets matching `filter`'s street, unit and category,
/// received in the `q.days` days before the filter's end (or `now`, if earlier).
pub fn hotspots(
    model: &ReadModel,
    filter: &Filter,
    q: &HotspotQuery,
    now: DateTime<Utc>,
    names: &Names<'_>,
    cache: &SimilarityCache,
) -> Vec<Hotspot> {
    let end = filter.end().min(now);
    let start = end - Duration::days(q.days);
    let mut by_community: HashMap<&str, Vec<&Fact>> = HashMap::new();
    for f in model.facts() {
        if !f.community.is_empty()
            && f.received_at >= start
            && f.received_at <= end
            && filter.matches_dims(f)
        {
            by_community
                .entry(f.community.as_str())
                .or_default()
                .push(f);
        }
    }
    let window = Duration::days(q.window_days);
    let mut out = Vec::new();
    for (community, mut facts) in by_community {
        if facts.len() < q.min_size {
            continue;
        }
        facts.sort_by_key(|f| (f.received_at, f.id));
        let mut parent: Vec<usize> = (0..facts.len()).collect();
        for i in 0..facts.len() {
            for j in i + 1..facts.len() {
                if facts[j].received_at - facts[i].received_at > window {
                    break;
                }
                let (a, b) = (facts[i], facts[j]);
                let linked = a.duplicate_of == Some(b.id)
                    || b.duplicate_of == Some(a.id)
                    || cache.get(a, b) >= q.threshold;
                if linked {
                    let (ra, rb) = (find(&mut parent, i), find(&mut parent, j));
                    parent[rb] = ra;
                }
            }
        }
        let mut clusters: HashMap<usize, Vec<&Fact>> = HashMap::new();
        for (i, f) in facts.iter().enumerate() {
            let root = find(&mut parent, i);
            clusters.entry(root).or_default().push(f);
        }
        for (_, members) in clusters {
            if members.len() >= q.min_size {
                out.push(hotspot(community, &members, names));
            }
        }
    }
    out.sort_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then(b.last_at.cmp(&a.last_at))
            .then(a.community.cmp(&b.community))
    });
    out.truncate(q.limit);
    for (i, h) in out.iter_mut().enumerate() {
        h.rank = i as u32 + 1;
    }
    out
}

/// One cluster; `members` are in receipt order.
fn hotspot(community: &str, members: &[&Fact], names: &Names<'_>) -> Hotspot {
    let most = |key: &dyn Fn(&Fact) -> &str| {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for f in members {
            *counts.entry(key(f)).or_default() += 1;
        }
        counts
            .into_iter()
            .filter(|(k, _)| !k.is_empty())
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(k, _)| k.to_owned())
            .unwrap_or_default()
    };
    let street = members[0].street.clone();
    let mut tickets: Vec<HotspotTicket> = members
        .iter()
        .map(|f| {
            let lead = f
                .handling
                .as_ref()
                .map(|h| h.lead_unit.clone())
                .unwrap_or_default();
            HotspotTicket {
                id: f.id,
                tracking_number: f.tracking_number.clone(),
                excerpt: f.excerpt(EXCERPT_CHARS),
                received_at: f.received_at,
                status: f.status.as_str().to_owned(),
                lead_unit_name: if lead.is_empty() {
                    String::new()
                } else {
                    names.unit(&lead)
                },
                lead_unit: lead,
            }
        })
        .collect();
    tickets.reverse();
    Hotspot {
        rank: 0,
        community: community.to_owned(),
        community_name: names.unit(community),
        street_name: names.unit(&street),
        street,
        size: members.len() as u64,
        open: members.iter().filter(|f| f.status.is_open()).count() as u64,
        first_at: members[0].received_at,
        last_at: members[members.len() - 1].received_at,
        category: most(&|f| f.category.as_str()),
        item_name: most(&|f| f.item_name.as_str()),
        label: members[0].excerpt(EXCERPT_CHARS),
        tickets,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use minyi_core::petition::{Channel, TicketStatus};

    use super::*;

    fn fact(n: u128, community: &str, day: u32, text: &str) -> Fact {
        Fact {
            id: Uuid::from_u128(n),
            tracking_number: format!("MY-{n}"),
            version: 1,
            status: TicketStatus::NeedsDispatcher,
            channel: Channel::Hotline,
            received_at: Utc.with_ymd_and_hms(2026, 11, day, 2, 0, 0).unwrap(),
            text: text.into(),
            item_code: String::new(),
            item_name: String::new(),
            category: "城市管理".into(),
            street: "ST-GM".into(),
            community: community.into(),
            auto_routed: false,
            duplicate_of: None,
            handling: None,
        }
    }

    #[test]
    fn similar_petitions_of_one_community_within_the_window_cluster() {
        let catalog = minyi_catalog::demo_slice();
        let names = Names(&catalog);
        let dz = "CM-GM-DONGZHOU";
        let mut m = ReadModel::default();
        // Alike, phone numbers aside: one cluster of three.
        m.upsert(fact(
            1,
            dz,
            20,
            "华夏路大排档每天凌晨喧哗噪声扰民，电话139****5678",
        ));
        m.upsert(fact(2, dz, 21, "华夏路大排档每天凌晨喧哗噪声扰民严重"));
        m.upsert(fact(3, dz, 22, "华夏路大排档每天凌晨喧哗，噪声扰民"));
        // Alike but a week later: outside the 3-day window of the others.
        m.upsert(fact(4, dz, 26, "华夏路大排档每天凌晨喧哗噪声扰民"));
        // Another matter, and the same matter in another community.
        m.upsert(fact(5, dz, 21, "公司拖欠工资两个月老板联系不上"));
        m.upsert(fact(
            6,
            "CM-GM-BIYAN",
            21,
            "华夏路大排档每天凌晨喧哗噪声扰民",
        ));
        // A linked duplicate joins whatever its text.
        let mut dup = fact(7, dz, 21, "同上");
        dup.duplicate_of = Some(Uuid::from_u128(5));
        m.upsert(dup);
        let filter = Filter {
            from: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            street: None,
            unit: None,
            category: None,
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
        let cache = SimilarityCache::default();
        let spots = hotspots(&m, &filter, &HotspotQuery::default(), now, &names, &cache);
        let sizes: Vec<(u64, Vec<String>)> = spots
            .iter()
            .map(|h| {
                let mut t: Vec<String> = h
                    .tickets
                    .iter()
                    .map(|t| t.tracking_number.clone())
                    .collect();
                t.sort();
                (h.size, t)
            })
            .collect();
        assert_eq!(
            sizes,
            [
                (3, vec!["MY-1".into(), "MY-2".into(), "MY-3".into()]),
                (2, vec!["MY-5".into(), "MY-7".into()]),
            ]
        );
        assert_eq!(spots[0].rank, 1);
        assert_eq!(spots[0].community_name, "东周社区");
        // Asking again is served from the cache and gives the same answer.
        assert_eq!(
            hotspots(&m, &filter, &HotspotQuery::default(), now, &names, &cache),
            spots
        );
        let q = HotspotQuery {
            min_size: 3,
            ..HotspotQuery::default()
        };
        assert_eq!(hotspots(&m, &filter, &q, now, &names, &cache).len(), 1);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(HotspotQuery::parse([("days", "7"), ("threshold", "0.4")]).is_ok());
        let e =
            HotspotQuery::parse([("days", "0"), ("min_size", "1"), ("limit", "x")]).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["days", "min_size", "limit"]);
    }
}
