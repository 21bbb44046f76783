//! Similarity of two petitions' texts: Jaccard overlap of character bigrams, ignoring
//! punctuation and whitespace. Cheap, language-neutral, and good at "the same complaint
//! phrased again by another neighbour".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Characters of a text that take part (the rest cannot change the verdict much).
const MAX_CHARS: usize = 2_000;

/// A text's distinct character bigrams, each packed exactly into one `u64` (two code points),
/// sorted: two texts compare by merging, with no hashing and no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shingles(Vec<u64>);

impl Shingles {
    pub fn of(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len().min(MAX_CHARS));
        for c in text.chars().filter(|c| c.is_alphanumeric()) {
            if c.is_ascii() {
                chars.push(c.to_ascii_lowercase());
            } else {
                chars.extend(c.to_lowercase());
            }
            if chars.len() >= MAX_CHARS {
                chars.truncate(MAX_CHARS);
                break;
            }
        }
        let mut pairs: Vec<u64> = chars
            .windows(2)
            .map(|w| (u64::from(w[0]) << 32) | u64::from(w[1]))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        Self(pairs)
    }

    /// An upper bound of [`Shingles::similarity`] from the sizes alone (the overlap is at most
    /// the smaller set, the union at least the larger): candidates that cannot reach a
    /// threshold are skipped without merging.
    pub fn similarity_bound(&self, other: &Shingles) -> f64 {
        let (a, b) = (self.0.len(), other.0.len());
        if a == 0 || b == 0 {
            return 0.0;
        }
        a.min(b) as f64 / a.max(b) as f64
    }

    /// Jaccard similarity, in [0, 1]; 0 when either side has no bigram.
    pub fn similarity(&self, other: &Shingles) -> f64 {
        let (a, b) = (&self.0, &other.0);
        if a.is_empty() || b.is_empty() {
            return 0.0;
        }
        let (mut i, mut j, mut inter) = (0, 0, 0usize);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    inter += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        inter as f64 / (a.len() + b.len() - inter) as f64
    }
}

/// Jaccard similarity of character bigrams, in [0, 1].
pub fn similarity(a: &str, b: &str) -> f64 {
    Shingles::of(a).similarity(&Shingles::of(b))
}

/// Shingles of tickets already seen, by ticket id (a ticket's text never changes), so the
/// duplicate check does not re-read every candidate's text for every new petition. Bounded:
/// two generations of at most `capacity` entries; when the young one fills up, the old one
/// is dropped.
/// One generation of the cache.
type Generation = HashMap<Uuid, Arc<Shingles>>;

#[derive(Debug)]
pub struct ShingleCache {
    capacity: usize,
    generations: Mutex<(Generation, Generation)>,
}

impl Default for ShingleCache {
    /// 10,000 tickets a generation (200 candidates for each of 50 busy communities): two
    /// generations take ~35 MB at a median petition's length (~220 characters, ~1.7 KB of
    /// bigrams), at most ~16 KB a ticket for texts of 2,000 characters and more.
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl ShingleCache {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            generations: Mutex::default(),
        }
    }

    /// The shingles of ticket `id`, computing them from `text` when not cached.
    pub fn get_or_insert(&self, id: Uuid, text: &str) -> Arc<Shingles> {
        if let Some(s) = self.get(id) {
            return s;
        }
        let s = Arc::new(Shingles::of(text));
        self.insert(id, s.clone());
        s
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Shingles>> {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = g.0.get(&id) {
            return Some(s.clone());
        }
        // Promote an old entry that is still in use.
        let s = g.1.remove(&id)?;
        Self::put(&mut g, self.capacity, id, s.clone());
        Some(s)
    }

    pub fn insert(&self, id: Uuid, shingles: Arc<Shingles>) {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        Self::put(&mut g, self.capacity, id, shingles);
    }

    fn put(g: &mut (Generation, Generation), capacity: usize, id: Uuid, s: Arc<Shingles>) {
        if g.0.len() >= capacity {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(id, s);
    }

    /// Entries held (both generations).
    pub fn len(&self) -> usize {
        let g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.0.len() + g.1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_score_high_and_different_matters_low() {
        let a = "东周社区华夏路烧烤店晚上油烟很大，噪音扰民";
        let b = "华夏路那家烧烤店晚上油烟很大，而且噪音扰民！";
        let c = "公司拖欠工资两个月，老板联系不上";
        assert!(similarity(a, b) > 0.5, "{}", similarity(a, b));
        assert!(similarity(a, c) < 0.1);
        assert_eq!(similarity(a, a), 1.0);
        assert_eq!(similarity("", a), 0.0);
        assert_eq!(similarity("!!", "??"), 0.0);
    }

    #[test]
    fn same_verdicts_as_a_plain_set_jaccard() {
        use std::collections::HashSet;
        fn reference(a: &str, b: &str) -> f64 {
            let grams = |t: &str| -> HashSet<(char, char)> {
                let cs: Vec<char> = t
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect();
                cs.windows(2).map(|w| (w[0], w[1])).collect()
            };
            let (a, b) = (grams(a), grams(b));
            if a.is_empty() || b.is_empty() {
                return 0.0;
            }
            let i = a.intersection(&b).count() as f64;
            i / (a.len() as f64 + b.len() as f64 - i)
        }
        let texts = [
            "东周社区华夏路烧烤店晚上油烟很大，噪音扰民",
            "华夏路那家烧烤店晚上油烟很大，而且噪音扰民！",
            "Street LIGHT broken at Guangming Road 12, ΣΑΣ street light",
            "street light broken at guangming road, σας",
            "İstanbul İİ ǅ ǆ — 路灯坏了路灯坏了",
            "路灯坏了",
            "",
        ];
        for a in texts {
            for b in texts {
                let (got, want) = (similarity(a, b), reference(a, b));
                assert!(
                    (got - want).abs() < 1e-12,
                    "{a:?} vs {b:?}: {got} != {want}"
                );
                let bound = Shingles::of(a).similarity_bound(&Shingles::of(b));
                assert!(bound >= got, "{a:?} vs {b:?}: bound {bound} < {got}");
            }
        }
    }

    #[test]
    fn the_cache_keeps_two_generations_and_promotes_what_is_used() {
        let cache = ShingleCache::with_capacity(2);
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let first = cache.get_or_insert(ids[0], "路灯坏了");
        cache.get_or_insert(ids[1], "井盖丢了");
        // The young generation is full: the next insert ages it.
        cache.get_or_insert(ids[2], "噪音扰民");
        assert_eq!(cache.len(), 3);
        // Reading an old entry moves it back into the young generation, even given new text.
        assert_eq!(cache.get_or_insert(ids[0], "something else"), first);
        cache.get_or_insert(ids[3], "油烟很大");
        // ids[1] was never used again and is gone with its generation.
        assert!(cache.get(ids[1]).is_none());
        assert!(cache.get(ids[0]).is_some());
        assert!(cache.len() <= 4);
    }
}
