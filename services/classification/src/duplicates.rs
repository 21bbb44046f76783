//! Similarity of two petitions' texts: Jaccard overlap of character bigrams, ignoring
//! punctuation and whitespace. Cheap, language-neutral, and good at "the same complaint
//! phrased again by another neighbour".

use std::collections::HashSet;

fn bigrams(text: &str) -> HashSet<(char, char)> {
    let chars: Vec<char> = text
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .take(2_000)
        .collect();
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Jaccard similarity of character bigrams, in [0, 1].
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (bigrams(a), bigrams(b));
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let inter = a.intersection(&b).count() as f64;
    inter / (a.len() as f64 + b.len() as f64 - inter)
}

#[cfg(test)]
mod tests {
    use super::similarity;

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
}
