//! TF-IDF nearest-centroid classifier for large label sets (thousands of classes, a handful of
//! short examples each), where one-vs-rest SVMs are far too slow to train.
//!
//! Each class's centroid is the sum of its training rows (already sublinear TF-IDF and
//! L2-normalised), L2-normalised again; a text's score for a class is the cosine similarity with
//! the centroid. Centroids are stored in the same sparse feature-major [`LinearWeights`] as the
//! SVMs (bias 0), so prediction is an inverted-index lookup: cost ∝ the text's features × the
//! classes that share each feature, independent of the total number of classes otherwise.

use rayon::prelude::*;

use crate::features::SparseVec;
use crate::linear::LinearWeights;

/// Fits one L2-normalised centroid per class. `y[i]` is the class of `rows[i]`; a class without
/// rows gets an empty centroid (it always scores 0). Each centroid keeps at most
/// `max_weights_per_class` of its largest weights (`0` keeps all).
pub(crate) fn train_centroids(
    rows: &[SparseVec],
    y: &[u32],
    n_classes: usize,
    n_cols: usize,
    max_weights_per_class: usize,
) -> LinearWeights {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, &c) in y.iter().enumerate() {
        if let Some(m) = members.get_mut(c as usize) {
            m.push(i);
        }
    }
    let per_class: Vec<(Vec<(u32, f32)>, f32)> = members
        .par_iter()
        .map(|idx| {
            let mut entries: Vec<(u32, f32)> = idx
                .iter()
                .flat_map(|&i| {
                    let r = &rows[i];
                    r.indices.iter().copied().zip(r.values.iter().copied())
                })
                .filter(|&(j, _)| (j as usize) < n_cols)
                .collect();
            entries.sort_unstable_by_key(|e| e.0);
            let mut summed: Vec<(u32, f32)> = Vec::with_capacity(entries.len());
            for (j, v) in entries {
                match summed.last_mut() {
                    Some(last) if last.0 == j => last.1 += v,
                    _ => summed.push((j, v)),
                }
            }
            summed.retain(|e| e.1 != 0.0 && e.1.is_finite());
            let keep = max_weights_per_class;
            if keep > 0 && summed.len() > keep {
                summed.select_nth_unstable_by(keep - 1, |a, b| b.1.abs().total_cmp(&a.1.abs()));
                summed.truncate(keep);
                summed.sort_unstable_by_key(|e| e.0);
            }
            let norm: f32 = summed.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
            if norm > 0.0 {
                summed.iter_mut().for_each(|e| e.1 /= norm);
            }
            (summed, 0.0)
        })
        .collect();
    // Class-frequency weighting, (ln(classes / classes with the feature) + 1)²: a feature
    // shared by many classes (openers, place names, common characters) says little about which
    // one it is. On the demo catalog this took top-1 0.51 → 0.56 and top-5 0.74 → 0.82 (the
    // square: +2 points top-5 over the plain weight).
    let mut class_freq = vec![0u32; n_cols];
    for (w, _) in &per_class {
        for &(j, _) in w {
            class_freq[j as usize] += 1;
        }
    }
    let n = n_classes as f32;
    let icf: Vec<f32> = class_freq
        .iter()
        .map(|&cf| {
            let w = (n / cf.max(1) as f32).ln() + 1.0;
            w * w
        })
        .collect();
    let per_class: Vec<(Vec<(u32, f32)>, f32)> = per_class
        .into_par_iter()
        .map(|(mut w, b)| {
            w.iter_mut().for_each(|e| e.1 *= icf[e.0 as usize]);
            let norm: f32 = w.iter().map(|e| e.1 * e.1).sum::<f32>().sqrt();
            if norm > 0.0 {
                w.iter_mut().for_each(|e| e.1 /= norm);
            }
            (w, b)
        })
        .collect();
    LinearWeights::from_class_major(&per_class, n_cols)
}

/// The `k` highest scores as `(class, score)`, best first; ties by lower class index.
pub(crate) fn top_k(scores: &[f32], k: usize) -> Vec<(u32, f32)> {
    let clean = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut all: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u32, clean(s)))
        .collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, order);
        all.truncate(k);
    }
    all.sort_unstable_by(order);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_centroid_wins() {
        let rows = [
            SparseVec::from_pairs(&[(0, 1.0)]),
            SparseVec::from_pairs(&[(0, 0.8), (1, 0.6)]),
            SparseVec::from_pairs(&[(2, 1.0)]),
            SparseVec::from_pairs(&[(2, 0.6), (3, 0.8)]),
        ];
        let w = train_centroids(&rows, &[0, 0, 1, 1], 3, 4, 0);
        let s = w.scores(&SparseVec::from_pairs(&[(0, 1.0)]));
        assert!(s[0] > s[1] && s[1] == 0.0 && s[2] == 0.0);
        let s = w.scores(&SparseVec::from_pairs(&[(3, 1.0)]));
        assert!(s[1] > s[0]);
        assert_eq!(
            top_k(&[0.1, 0.5, f32::NAN, 0.5], 3),
            [(1, 0.5), (3, 0.5), (0, 0.1)]
        );
        assert!(top_k(&[], 3).is_empty());
    }
}
