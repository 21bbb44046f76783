//! The demo catalog of 光明区 and a synthetic petition history over it.
//!
//! Everything is generated deterministically from vocabulary tables written for this project
//! (the private `families` and `minors` modules): an item is a *subject* of a minor category (垃圾转运站, 网约车 …)
//! combined with an *aspect* of the minor's issue family (损坏, 夜间噪声扰民, 拖欠工资 …). The
//! aspect decides grade and limits; the minor decides the owner. Combinations are cut evenly to
//! exactly [`DEMO_ITEM_COUNT`] items, the size of 光明区's 2025 catalog.

mod families;
mod minors;

use std::collections::HashSet;

use crate::gazetteer::Gazetteer;
use crate::model::{Catalog, CatalogItem, Grade, Limits, Responsibility, UnitDirectory};

/// Number of items in the demo catalog.
pub const DEMO_ITEM_COUNT: usize = 3469;

/// Version label of the demo catalog.
pub const DEMO_VERSION: &str = "demo-2025";

/// The kind of a matter, which sets grade and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// 紧急: accept in 1 h, complete in 1 day.
    Urgent,
    /// 投诉: complete within the minor's complaint limit (10-15 days).
    Complaint,
    /// 举报: 15 days.
    Report,
    /// 咨询: 3 days.
    Enquiry,
    /// 求助: 5 days.
    Help,
    /// 建议/表扬: 15 days.
    Suggestion,
}

/// One issue of a family.
pub(crate) struct Aspect {
    suffix: &'static str,
    desc: &'static str,
    kind: Kind,
    kw: &'static [&'static str],
    says: &'static [&'static str],
}

/// A minor category.
pub(crate) struct Minor {
    major: &'static str,
    mc: &'static str,
    name: &'static str,
    /// Owner unit code; empty for territorial.
    unit: &'static str,
    co: &'static [&'static str],
    fam: &'static [Aspect],
    /// Completion limit of complaints in working days.
    days: u32,
    subjects: &'static [&'static str],
}

fn grade_and_limits(kind: Kind, complaint_days: u32) -> (Grade, Limits) {
    let l = |accept_hours, respond_hours, complete_days| Limits {
        accept_hours,
        respond_hours,
        complete_days,
    };
    match kind {
        Kind::Urgent => (Grade::Urgent, l(1, 1, 1)),
        Kind::Complaint => (Grade::Normal, l(4, 24, complaint_days)),
        Kind::Report => (Grade::Normal, l(4, 24, 15)),
        Kind::Enquiry => (Grade::Normal, l(4, 8, 3)),
        Kind::Help => (Grade::Normal, l(4, 24, 5)),
        Kind::Suggestion => (Grade::Normal, l(8, 48, 15)),
    }
}

/// A small deterministic PRNG (SplitMix64): the demo data must not change with a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A random element (`None` for an empty slice).
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        xs.get(self.below(xs.len()))
    }
}

struct Candidate {
    mc: &'static str,
    minor_no: usize,
    item: CatalogItem,
}

fn split_subject(s: &'static str) -> (&'static str, Vec<&'static str>) {
    match s.split_once(':') {
        Some((name, kws)) => (name, kws.split(',').filter(|k| !k.is_empty()).collect()),
        None => (s, Vec::new()),
    }
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !s.is_empty() && !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn candidates(units: &UnitDirectory) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(4096);
    let mut names = HashSet::new();
    let mut minor_no_of_major: Vec<(&str, usize)> = Vec::new();
    for minor in minors::MINORS {
        let minor_no = match minor_no_of_major.iter_mut().find(|(m, _)| *m == minor.mc) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                minor_no_of_major.push((minor.mc, 1));
                1
            }
        };
        let responsibility = if minor.unit.is_empty() {
            Responsibility::Territorial
        } else {
            Responsibility::functional(minor.unit)
        };
        let owner_text = match &responsibility {
            Responsibility::Functional { unit } => {
                let name = units.get(unit).map_or(unit.as_str(), |u| u.name.as_str());
                format!("由{name}负责办理")
            }
            Responsibility::Territorial => "由事发地街道办事处属地办理".to_string(),
        };
        let co_text = if minor.co.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = minor
                .co
                .iter()
                .map(|c| units.get(c).map_or(*c, |u| u.name.as_str()))
                .collect();
            format!("，{}协办", names.join("、"))
        };
        for subject in minor.subjects {
            let (s, skw) = split_subject(subject);
            for (ai, aspect) in minor.fam.iter().enumerate() {
                let name = format!("{s}{}", aspect.suffix);
                if !names.insert(name.clone()) {
                    continue;
                }
                let (grade, limits) = grade_and_limits(aspect.kind, minor.days);
                let mut keywords = Vec::new();
                push_unique(&mut keywords, s);
                for k in &skw {
                    push_unique(&mut keywords, k);
                }
                for k in aspect.kw {
                    push_unique(&mut keywords, k);
                }
                let n = aspect.says.len();
                // 2-4 phrasings, rotating through the templates so that subjects of one aspect
                // do not all share the same first phrasing.
                let count = (2 + (s.len() + ai) % 3).min(n);
                let start = s.chars().count() % n.max(1);
                let phrasings = (0..count)
                    .filter_map(|i| aspect.says.get((start + i) % n).map(|t| (i, t)))
                    .map(|(i, t)| {
                        let k = skw.get(i % skw.len().max(1)).copied().unwrap_or(s);
                        t.replace("{s}", s).replace("{k}", k)
                    })
                    .collect();
                let description = format!(
                    "{}：{s}{}。{owner_text}{co_text}。",
                    minor.name, aspect.desc
                );
                out.push(Candidate {
                    mc: minor.mc,
                    minor_no,
                    item: CatalogItem {
                        code: String::new(),
                        path: [
                            minor.major.to_string(),
                            minor.name.to_string(),
                            s.to_string(),
                        ],
                        name,
                        description,
                        keywords,
                        phrasings,
                        responsibility: responsibility.clone(),
                        co_units: minor.co.iter().map(|c| c.to_string()).collect(),
                        grade,
                        limits,
                        notes: Vec::new(),
                    },
                });
            }
        }
    }
    out
}

/// Total number of generated combinations before the cut to [`DEMO_ITEM_COUNT`].
pub fn demo_candidate_count() -> usize {
    candidates(&UnitDirectory::guangming()).len()
}

/// Builds the demo catalog (see the module docs).
pub(crate) fn demo_catalog() -> Catalog {
    let units = UnitDirectory::guangming();
    let all = candidates(&units);
    let total = all.len();
    let want = DEMO_ITEM_COUNT.min(total);
    let mut items = Vec::with_capacity(want);
    let mut last_minor: Option<(&str, usize)> = None;
    let mut seq = 0usize;
    for (j, c) in all.into_iter().enumerate() {
        // Keep item j when the running quota ticks over: exactly `want` survive, evenly spread.
        if (j + 1) * want / total == j * want / total {
            continue;
        }
        if last_minor != Some((c.mc, c.minor_no)) {
            last_minor = Some((c.mc, c.minor_no));
            seq = 0;
        }
        seq += 1;
        let mut item = c.item;
        item.code = format!("{}-{:02}-{:03}", c.mc, c.minor_no, seq);
        items.push(item);
    }
    Catalog::new(DEMO_VERSION, items, units)
}

const OPENERS: &[&str] = &[
    "",
    "",
    "您好，",
    "你好，",
    "市民来电反映：",
    "我要反映一个问题，",
    "麻烦帮忙处理一下，",
    "投诉：",
    "咨询一下，",
    "喂，你好，",
    "网友留言：",
];
const CLOSERS: &[&str] = &[
    "",
    "",
    "。",
    "，希望尽快处理。",
    "，请相关部门核实。",
    "，已经反映过好几次了！",
    "，谢谢。",
    "，麻烦尽快回复。",
    "！！",
    "，请给个说法。",
];
const TIMES: &[&str] = &[
    "",
    "",
    "",
    "昨天晚上",
    "今天早上",
    "这几天",
    "最近一个月",
    "上周开始",
    "刚刚",
];
const FILLERS: &[&str] = &["那个", "就是", "嗯，", "怎么说呢，", "说实话"];
/// Common misspellings in hotline transcripts.
const TYPOS: &[(&str, &str)] = &[
    ("垃圾", "拉圾"),
    ("噪音", "燥音"),
    ("投诉", "投述"),
    ("工资", "公资"),
    ("小区", "小去"),
    ("物业", "物叶"),
    ("停车", "仃车"),
];
const PLACE_TAILS: &[&str] = &["附近", "门口", "旁边", "这边", "路口", "一带", ""];

/// A synthetic history: `per_item` petition-like texts for every item, labelled with the item
/// code, in catalog order. Texts mix the item's phrasings, keywords and name with address
/// fragments from the 光明区 gazetteer, openers, times and noise (fillers, typos), so that a
/// classifier trained on them has to generalise beyond the catalog wording.
pub fn demo_history(catalog: &Catalog, per_item: usize, seed: u64) -> Vec<(String, String)> {
    let gaz = Gazetteer::guangming();
    let places: Vec<&str> = gaz.places().iter().map(|p| p.name.as_str()).collect();
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(catalog.len() * per_item);
    for item in catalog.items() {
        for _ in 0..per_item {
            let text = petition_text(item, &places, &mut rng);
            out.push((text, item.code.clone()));
        }
    }
    out
}

fn petition_text(item: &CatalogItem, places: &[&str], rng: &mut Rng) -> String {
    let core = match rng.below(10) {
        0..=5 => rng
            .pick(&item.phrasings)
            .cloned()
            .unwrap_or_else(|| item.name.clone()),
        6 | 7 => {
            let a = rng.pick(&item.keywords).map_or("", String::as_str);
            let b = rng.pick(&item.keywords).map_or("", String::as_str);
            if a == b {
                format!("{a}的问题一直没解决")
            } else {
                format!("{a}{b}的问题")
            }
        }
        8 => format!("反映{}", item.name),
        _ => {
            let p = rng.pick(&item.phrasings).map_or("", String::as_str);
            let k = rng.pick(&item.keywords).map_or("", String::as_str);
            format!("{p}，主要是{k}")
        }
    };
    let mut text = String::new();
    text.push_str(rng.pick(OPENERS).copied().unwrap_or(""));
    if rng.chance(0.7)
        && let Some(place) = rng.pick(places)
    {
        text.push('在');
        text.push_str(place);
        if rng.chance(0.3) {
            text.push_str(&format!("{}号", 1 + rng.below(200)));
        }
        text.push_str(rng.pick(PLACE_TAILS).copied().unwrap_or(""));
        text.push('，');
    }
    text.push_str(rng.pick(TIMES).copied().unwrap_or(""));
    if rng.chance(0.1) {
        text.push_str(rng.pick(FILLERS).copied().unwrap_or(""));
    }
    text.push_str(&core);
    text.push_str(rng.pick(CLOSERS).copied().unwrap_or(""));
    if rng.chance(0.08)
        && let Some((from, to)) = rng.pick(TYPOS)
    {
        text = text.replacen(from, to, 1);
    }
    text
}

/// A 24-item slice of the demo catalog (12 functional and 12 territorial items, spread over
/// the areas), version `small`: a classifier trains on it in about a second, for tests.
pub fn demo_slice() -> Catalog {
    let demo = Catalog::demo();
    let functional = demo
        .items()
        .iter()
        .filter(|i| matches!(i.responsibility, Responsibility::Functional { .. }))
        .step_by(97)
        .take(12);
    let territorial = demo
        .items()
        .iter()
        .filter(|i| matches!(i.responsibility, Responsibility::Territorial))
        .step_by(31)
        .take(12);
    let items: Vec<_> = functional.chain(territorial).cloned().collect();
    Catalog::new("small", items, demo.units().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_candidates() {
        let n = demo_candidate_count();
        assert!(n >= DEMO_ITEM_COUNT, "only {n} candidates");
    }

    #[test]
    fn history_is_deterministic_and_labelled() {
        let c = Catalog::demo();
        let a = demo_history(&c, 2, 7);
        let b = demo_history(&c, 2, 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), c.len() * 2);
        assert!(
            a.iter()
                .all(|(t, code)| !t.is_empty() && c.get(code).is_some())
        );
        let distinct: HashSet<&String> = a.iter().map(|(t, _)| t).collect();
        assert!(distinct.len() > a.len() * 9 / 10);
    }
}
