//! Evaluation metrics: accuracy, macro-F1, auto-dispatch coverage/precision, threshold selection.

use std::collections::BTreeMap;

/// A confusion matrix over the union of true and predicted labels.
#[derive(Debug, Clone)]
pub struct Confusion {
    /// Labels in sorted order; row = truth, column = prediction.
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Builds the matrix from parallel slices of true and predicted labels (extra items of the
    /// longer slice are ignored).
    pub fn new<T: AsRef<str>, P: AsRef<str>>(truth: &[T], predicted: &[P]) -> Self {
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for l in truth
            .iter()
            .map(AsRef::as_ref)
            .chain(predicted.iter().map(AsRef::as_ref))
        {
            index.entry(l).or_insert(0);
        }
        for (i, v) in index.values_mut().enumerate() {
            *v = i;
        }
        let n = index.len();
        let mut counts = vec![vec![0; n]; n];
        for (t, p) in truth.iter().zip(predicted) {
            if let (Some(&ti), Some(&pi)) = (index.get(t.as_ref()), index.get(p.as_ref())) {
                counts[ti][pi] += 1;
            }
        }
        Self {
            labels: index.keys().map(|l| l.to_string()).collect(),
            counts,
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Share of items on the diagonal (0 for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let correct: u64 = (0..self.labels.len()).map(|i| self.counts[i][i]).sum();
        correct as f64 / total as f64
    }

    /// F1 per label (0 when a label has neither true nor predicted items correct).
    pub fn f1_per_label(&self) -> Vec<f64> {
        let n = self.labels.len();
        (0..n)
            .map(|i| {
                let tp = self.counts[i][i] as f64;
                let actual: u64 = self.counts[i].iter().sum();
                let predicted: u64 = (0..n).map(|r| self.counts[r][i]).sum();
                let denominator = actual as f64 + predicted as f64;
                if denominator == 0.0 {
                    0.0
                } else {
                    2.0 * tp / denominator
                }
            })
            .collect()
    }

    /// Unweighted mean of the per-label F1 over every label that occurs in truth or prediction.
    pub fn macro_f1(&self) -> f64 {
        let f1 = self.f1_per_label();
        if f1.is_empty() {
            0.0
        } else {
            f1.iter().sum::<f64>() / f1.len() as f64
        }
    }
}

/// Coverage and precision of auto-dispatch at a threshold: items whose confidence is at or above
/// `threshold` are dispatched automatically. `precision` is `None` when nothing is dispatched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoDispatch {
    pub coverage: f64,
    pub precision: Option<f64>,
}

/// Measures auto-dispatch on `(confidence, correct)` pairs; `threshold = None` dispatches nothing.
pub fn auto_dispatch(items: &[(f64, bool)], threshold: Option<f64>) -> AutoDispatch {
    let Some(t) = threshold else {
        return AutoDispatch {
            coverage: 0.0,
            precision: None,
        };
    };
    let chosen: Vec<bool> = items.iter().filter(|i| i.0 >= t).map(|i| i.1).collect();
    let coverage = if items.is_empty() {
        0.0
    } else {
        chosen.len() as f64 / items.len() as f64
    };
    let precision = (!chosen.is_empty())
        .then(|| chosen.iter().filter(|&&c| c).count() as f64 / chosen.len() as f64);
    AutoDispatch {
        coverage,
        precision,
    }
}

/// The lowest confidence threshold `t` (one of the observed confidences) such that the items with
/// confidence ≥ `t` reach `target` precision with `z` standard errors to spare: the Wilson score
/// lower bound of their precision must reach `target` (`z = 0`: the precision itself). `None` if
/// no threshold does.
///
/// Why a margin: the lowest threshold at which the measured precision touches the target is the
/// most optimistic point of a noisy curve, so on fresh data the precision lands around the
/// target, half the time below it. The bound makes the target a floor at some cost in coverage.
pub fn select_threshold(items: &[(f64, bool)], target: f64, z: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = items.iter().copied().filter(|i| i.0.is_finite()).collect();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = None;
    let (mut seen, mut correct) = (0usize, 0usize);
    let mut i = 0;
    while i < sorted.len() {
        let value = sorted[i].0;
        // Items with equal confidence are dispatched together.
        while i < sorted.len() && sorted[i].0 == value {
            seen += 1;
            correct += usize::from(sorted[i].1);
            i += 1;
        }
        let reached = if z > 0.0 {
            wilson_lower_bound(correct, seen, z) >= target
        } else {
            correct as f64 >= target * seen as f64
        };
        if reached {
            best = Some(value);
        }
    }
    best
}

/// Lower end of the Wilson score interval of a proportion `successes / n`, `z` standard errors
/// below it; 0 for `n = 0`.
pub fn wilson_lower_bound(successes: usize, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    (centre - spread) / (1.0 + z2 / n)
}

/// Precision among the `coverage` share of items with the highest confidence (an oracle
/// threshold; for diagnostics, not for dispatch).
pub fn precision_at_coverage(items: &[(f64, bool)], coverage: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = items.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = ((sorted.len() as f64) * coverage).ceil() as usize;
    let n = n.min(sorted.len());
    (n > 0).then(|| sorted[..n].iter().filter(|i| i.1).count() as f64 / n as f64)
}

/// Expected calibration error of top-1 confidences: the items are put in `bins` equal-width
/// confidence bins, and the gaps between each bin's mean confidence and its accuracy are
/// averaged, weighted by the bin's share of the items. 0 = a confidence of 0.9 is right nine
/// times in ten. `None` for no items.
pub fn expected_calibration_error(items: &[(f64, bool)], bins: usize) -> Option<f64> {
    if items.is_empty() || bins == 0 {
        return None;
    }
    // Per bin: items, summed confidence, right answers.
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(confidence, right) in items {
        let c = confidence.clamp(0.0, 1.0);
        let b = ((c * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += c;
        sums[b].2 += usize::from(right);
    }
    let gap: f64 = sums
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|&(_, confidence, right)| (confidence - right as f64).abs())
        .sum();
    Some(gap / items.len() as f64)
}

/// The `p`-th percentile (0..=100, nearest rank) of unsorted values; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_error_is_the_weighted_gap_between_confidence_and_accuracy() {
        // Confidence 0.75, right 3 times in 4: calibrated.
        let calibrated = [(0.75, true), (0.75, true), (0.75, true), (0.75, false)];
        assert!(expected_calibration_error(&calibrated, 10).unwrap().abs() < 1e-12);
        // Bin [0.9, 1): confidence 0.95, right half the time (gap 0.45, half the items); bin
        // [0.2, 0.3): confidence 0.25, right every time (gap 0.75, the other half).
        let off = [(0.95, true), (0.95, false), (0.25, true), (0.25, true)];
        let e = expected_calibration_error(&off, 10).unwrap();
        assert!((e - (0.5 * 0.45 + 0.5 * 0.75)).abs() < 1e-12, "{e}");
        // A confidence of exactly 1 falls in the top bin.
        assert_eq!(expected_calibration_error(&[(1.0, true)], 10), Some(0.0));
        assert_eq!(expected_calibration_error(&[], 10), None);
    }

    #[test]
    fn confusion_metrics_match_hand_computation() {
        // truth a a a b b c ; pred a a b b c c
        let truth = ["a", "a", "a", "b", "b", "c"];
        let pred = ["a", "a", "b", "b", "c", "c"];
        let m = Confusion::new(&truth, &pred);
        assert_eq!(m.labels, ["a", "b", "c"]);
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        // F1: a = 2·2/(3+2) = 0.8; b = 2·1/(2+2) = 0.5; c = 2·1/(1+2) = 2/3.
        let f1 = m.f1_per_label();
        assert!((f1[0] - 0.8).abs() < 1e-12);
        assert!((f1[1] - 0.5).abs() < 1e-12);
        assert!((f1[2] - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_f1() - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn label_only_predicted_counts_in_macro_f1() {
        let m = Confusion::new(&["a", "a"], &["a", "z"]);
        // a: 2·1/(2+1) = 2/3; z: 0.
        assert!((m.macro_f1() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(Confusion::new::<&str, &str>(&[], &[]).accuracy(), 0.0);
    }

    #[test]
    fn threshold_is_lowest_reaching_target() {
        let items = [
            (0.99, true),
            (0.95, true),
            (0.90, true),
            (0.80, false),
            (0.70, true),
            (0.60, true),
            (0.50, true),
            (0.40, false),
            (0.30, false),
        ];
        // Precision at ≥0.5 is 6/7 ≈ 0.857; at ≥0.4 it is 6/8 = 0.75; at ≥0.9 it is 1.
        assert_eq!(select_threshold(&items, 0.85, 0.0), Some(0.50));
        assert_eq!(select_threshold(&items, 0.98, 0.0), Some(0.90));
        assert_eq!(select_threshold(&items, 0.5, 0.0), Some(0.30));
        assert_eq!(select_threshold(&[(0.9, false)], 0.98, 0.0), None);
        let a = auto_dispatch(&items, Some(0.5));
        assert!((a.coverage - 7.0 / 9.0).abs() < 1e-12);
        assert!((a.precision.unwrap() - 6.0 / 7.0).abs() < 1e-12);
        assert_eq!(auto_dispatch(&items, None).precision, None);
    }

    #[test]
    fn ties_are_dispatched_together() {
        let items = [(0.9, true), (0.8, true), (0.8, false)];
        assert_eq!(select_threshold(&items, 0.9, 0.0), Some(0.9));
    }

    #[test]
    fn wilson_margin_asks_for_more_evidence() {
        // 98 of 100 right is 0.98 exactly; its lower bound one standard error down is below.
        let lb = wilson_lower_bound(98, 100, 1.0);
        assert!(lb < 0.98 && lb > 0.96, "{lb}");
        assert_eq!(wilson_lower_bound(0, 0, 1.0), 0.0);
        assert!((wilson_lower_bound(7, 10, 0.0) - 0.7).abs() < 1e-12);
        // The bound tightens with more items at the same precision.
        assert!(wilson_lower_bound(980, 1000, 1.0) > lb);
        // 200 items, confidences falling, wrong only at ranks 186, 196 and 200. Without a margin
        // the threshold goes as low as the precision allows (199 items: 197 right, 0.990);
        // with one it stops higher, where the evidence still clears the target.
        let mut items: Vec<(f64, bool)> = (0..200)
            .map(|i| (1.0 - f64::from(i) / 1000.0, true))
            .collect();
        items[185].1 = false;
        items[195].1 = false;
        items[199].1 = false;
        let plain = select_threshold(&items, 0.986, 0.0).unwrap();
        let safe = select_threshold(&items, 0.986, 1.0).unwrap();
        assert!(safe > plain, "{safe} vs {plain}");
        assert_eq!(plain, items[198].0);
    }

    #[test]
    fn oracle_precision_and_percentiles() {
        let items = [(0.9, true), (0.8, false), (0.7, true), (0.6, true)];
        assert_eq!(precision_at_coverage(&items, 0.5), Some(0.5));
        assert_eq!(precision_at_coverage(&items, 0.25), Some(1.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
