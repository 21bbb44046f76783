//! Text → sparse feature vectors: normalisation, character n-grams and jieba words, hashed to
//! 64-bit feature ids, then sublinear TF-IDF with L2 normalisation against a fitted vocabulary.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};

/// The dictionary is loaded once per process (≈ 0.2 s); `Jieba` is immutable and shareable.
static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// Forces the jieba dictionary to load now rather than on the first prediction.
pub(crate) fn warm_up() {
    LazyLock::force(&JIEBA);
}

/// Which features are extracted from a text. Stored in the model so prediction matches training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    /// Only the first `max_chars` characters are analysed; bounds latency on huge inputs.
    pub max_chars: usize,
    /// Character n-gram lengths, inclusive (`1..=3` by default). `0` disables.
    pub char_ngram_max: usize,
    /// Weight of the jieba word block relative to the character block.
    pub word_weight: f32,
    /// Also emit bigrams of consecutive jieba words.
    pub word_bigrams: bool,
    /// Features seen in fewer training documents are dropped.
    pub min_df: u32,
    /// The opening of a petition usually states the matter: jieba words of the first
    /// `head_chars` characters form an extra block (`0` disables).
    pub head_chars: usize,
    /// Weight of the head block.
    pub head_weight: f32,
}

impl FeatureConfig {
    /// Weights of the character, word and head blocks.
    pub(crate) fn block_weights(&self) -> [f32; 3] {
        [1.0, self.word_weight, self.head_weight]
    }
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            max_chars: 1000,
            char_ngram_max: 3,
            word_weight: 1.0,
            word_bigrams: false,
            min_df: 3,
            head_chars: 0,
            head_weight: 0.0,
        }
    }
}

/// A text's features before weighting: `(feature id, block, count)`, sorted by id, unique ids.
pub(crate) type RawDoc = Vec<(u64, u8, f32)>;

/// Feature blocks, normalised separately and then weighted.
const BLOCK_CHARS: u8 = 0;
const BLOCK_WORDS: u8 = 1;
const BLOCK_HEAD: u8 = 2;
const N_BLOCKS: usize = 3;

/// Namespaces keep a character n-gram and an equal-looking word apart.
const NS_WORD: u64 = 16;
const NS_WORD_BIGRAM: u64 = 17;
const NS_HEAD: u64 = 18;

/// Folds full-width ASCII to half-width, lower-cases, maps every digit to `0` (dates, amounts and
/// house numbers say little about the category) and truncates to `max_chars` characters.
pub(crate) fn normalize(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for c in text.chars().take(max_chars) {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        };
        if c.is_ascii_digit() {
            out.push('0');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A character that belongs to a token (CJK ideographs, letters, digits). Everything else
/// (punctuation, spaces, symbols, emoji) separates n-grams.
fn is_token_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// FNV-1a over the UTF-8 bytes, seeded by namespace, with a final avalanche so the ids can be used
/// directly as hash-map keys.
#[derive(Clone, Copy)]
struct FeatureHash(u64);

impl FeatureHash {
    fn new(namespace: u64) -> Self {
        Self(0xcbf2_9ce4_8422_2325 ^ namespace.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn bytes(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    fn char(self, c: char) -> Self {
        let mut buf = [0u8; 4];
        self.bytes(c.encode_utf8(&mut buf).as_bytes())
    }
    fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Extracts the raw (unweighted) features of a text. Never panics; an empty or symbol-only text
/// yields no features.
pub(crate) fn extract(text: &str, config: &FeatureConfig) -> RawDoc {
    let text = normalize(text, config.max_chars);
    let mut feats: Vec<(u64, u8)> = Vec::with_capacity(text.len() * 2);

    if config.char_ngram_max > 0 {
        let chars: Vec<char> = text.chars().collect();
        for run in chars.split(|&c| !is_token_char(c)) {
            for start in 0..run.len() {
                let mut h = FeatureHash::new(0);
                for (n, &c) in run[start..].iter().take(config.char_ngram_max).enumerate() {
                    h = h.char(c);
                    // Namespace by length so that the n-gram id does not depend on FNV prefixes.
                    feats.push((FeatureHash(h.0 ^ (n as u64 + 1)).finish(), BLOCK_CHARS));
                }
            }
        }
    }

    if config.word_weight > 0.0 {
        let mut previous: Option<&str> = None;
        for token in JIEBA.cut(&text, true) {
            let word = token.word;
            if !word.chars().any(is_token_char) {
                previous = None;
                continue;
            }
            feats.push((
                FeatureHash::new(NS_WORD).bytes(word.as_bytes()).finish(),
                BLOCK_WORDS,
            ));
            if let (true, Some(p)) = (config.word_bigrams, previous) {
                let h = FeatureHash::new(NS_WORD_BIGRAM)
                    .bytes(p.as_bytes())
                    .bytes(&[0])
                    .bytes(word.as_bytes());
                feats.push((h.finish(), BLOCK_WORDS));
            }
            previous = Some(word);
        }
    }

    if config.head_chars > 0 && config.head_weight > 0.0 {
        let end = text
            .char_indices()
            .nth(config.head_chars)
            .map_or(text.len(), |(i, _)| i);
        for token in JIEBA.cut(&text[..end], true) {
            if token.word.chars().any(is_token_char) {
                let h = FeatureHash::new(NS_HEAD).bytes(token.word.as_bytes());
                feats.push((h.finish(), BLOCK_HEAD));
            }
        }
    }

    feats.sort_unstable();
    let mut doc: RawDoc = Vec::with_capacity(feats.len());
    for (id, block) in feats {
        match doc.last_mut() {
            Some(last) if last.0 == id => last.2 += 1.0,
            _ => doc.push((id, block, 1.0)),
        }
    }
    doc
}

/// Feature ids are already well mixed hashes: hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type IdMap = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

/// A sparse vector: column indices (ascending) and values.
#[derive(Debug, Clone, Default)]
pub(crate) struct SparseVec {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

#[cfg(test)]
impl SparseVec {
    /// A vector from `(column, value)` pairs, for tests.
    pub(crate) fn from_pairs(pairs: &[(u32, f32)]) -> Self {
        Self {
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        }
    }
}

/// The fitted part of the feature pipeline: which features are kept and their IDF weights.
#[derive(Debug, Clone)]
pub(crate) struct Vocabulary {
    /// Feature id → column.
    pub index: IdMap,
    /// Per column: feature id (to rebuild `index` after loading).
    pub ids: Vec<u64>,
    pub idf: Vec<f32>,
    /// Per column: block (characters or words).
    pub blocks: Vec<u8>,
    /// Weight of each block.
    pub block_weights: [f32; N_BLOCKS],
}

impl Vocabulary {
    /// Keeps features occurring in at least `min_df` of `docs`, with smoothed IDF
    /// `ln((1 + n) / (1 + df)) + 1`.
    pub fn fit(docs: &[&RawDoc], min_df: u32, block_weights: [f32; N_BLOCKS]) -> Self {
        let mut df: HashMap<u64, (u32, u8), BuildHasherDefault<IdHasher>> = HashMap::default();
        for doc in docs {
            for &(id, block, _) in doc.iter() {
                df.entry(id).or_insert((0, block)).0 += 1;
            }
        }
        let mut kept: Vec<(u64, u32, u8)> = df
            .into_iter()
            .filter(|&(_, (count, _))| count >= min_df.max(1))
            .map(|(id, (count, block))| (id, count, block))
            .collect();
        kept.sort_unstable();
        let n = docs.len() as f32;
        let ids: Vec<u64> = kept.iter().map(|k| k.0).collect();
        let idf = kept
            .iter()
            .map(|&(_, count, _)| ((1.0 + n) / (1.0 + count as f32)).ln() + 1.0)
            .collect();
        let blocks = kept.iter().map(|k| k.2).collect();
        Self::from_parts(ids, idf, blocks, block_weights)
    }

    pub fn from_parts(
        ids: Vec<u64>,
        idf: Vec<f32>,
        blocks: Vec<u8>,
        block_weights: [f32; N_BLOCKS],
    ) -> Self {
        let index = ids
            .iter()
            .enumerate()
            .map(|(col, &id)| (id, col as u32))
            .collect();
        Self {
            index,
            ids,
            idf,
            blocks,
            block_weights,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Sublinear TF (`1 + ln tf`) × IDF; each block L2-normalised and scaled by its weight, and
    /// the whole vector L2-normalised again.
    pub fn transform(&self, doc: &RawDoc) -> SparseVec {
        let mut entries: Vec<(u32, f32, u8)> = doc
            .iter()
            .filter_map(|&(id, _, tf)| {
                let col = *self.index.get(&id)?;
                let w = (1.0 + tf.ln()) * self.idf[col as usize];
                Some((col, w, self.blocks[col as usize]))
            })
            .collect();
        let block = |b: u8| usize::from(b).min(N_BLOCKS - 1);
        let mut norms = [0.0f32; N_BLOCKS];
        for &(_, w, b) in &entries {
            norms[block(b)] += w * w;
        }
        let mut scale = [0.0f32; N_BLOCKS];
        for (i, s) in scale.iter_mut().enumerate() {
            *s = inverse_sqrt(norms[i]) * self.block_weights[i];
        }
        let mut total = 0.0;
        for e in &mut entries {
            e.1 *= scale[block(e.2)];
            total += e.1 * e.1;
        }
        let total = inverse_sqrt(total);
        entries.sort_unstable_by_key(|e| e.0);
        SparseVec {
            indices: entries.iter().map(|e| e.0).collect(),
            values: entries.iter().map(|e| e.1 * total).collect(),
        }
    }
}

fn inverse_sqrt(x: f32) -> f32 {
    if x > 0.0 { 1.0 / x.sqrt() } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_width_case_and_digits() {
        assert_eq!(normalize("ＡＢｃ１２3 Hello", 100), "abc000 hello");
        assert_eq!(normalize("一二三四", 2), "一二");
    }

    #[test]
    fn extracts_ngrams_and_words() {
        let config = FeatureConfig::default();
        let doc = extract("小区噪音扰民", &config);
        // 6 + 5 + 4 distinct character n-grams, plus words and word bigrams.
        assert!(doc.len() > 15, "{}", doc.len());
        assert!(doc.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(extract("", &config).is_empty());
        assert!(extract("！！？。。 ", &config).is_empty());
    }

    #[test]
    fn transform_is_unit_length() {
        let config = FeatureConfig::default();
        let docs: Vec<RawDoc> = ["小区噪音扰民", "小区停水", "噪音扰民严重"]
            .iter()
            .map(|t| extract(t, &config))
            .collect();
        let refs: Vec<&RawDoc> = docs.iter().collect();
        let vocab = Vocabulary::fit(&refs, 1, [1.0, 1.0, 1.0]);
        let v = vocab.transform(&docs[0]);
        let norm: f32 = v.values.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(vocab.transform(&extract("zzz", &config)).indices.is_empty());
    }
}
