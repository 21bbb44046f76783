//! One-vs-rest linear SVMs (L2-regularised squared hinge loss) trained by dual coordinate descent
//! (Hsieh et al. 2008, the LIBLINEAR `-s 1` solver), stored feature-major and sparse so that
//! scoring costs O(non-zeros of the text × classes per feature), also with thousands of classes.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::features::SparseVec;

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SvmParams {
    /// Inverse regularisation strength.
    pub c: f64,
    /// Stop when the projected-gradient spread falls below this.
    pub eps: f64,
    pub max_iter: usize,
    /// Reweights the positive class by `(n_neg / n_pos)^balance` (0 = unweighted).
    pub balance: f64,
    /// Value of the constant feature that carries the bias (regularised, as in LIBLINEAR).
    pub bias: f64,
    pub seed: u64,
    /// NB-SVM: when > 0, each class's features are scaled by the smoothed log-count ratio
    /// between the class and the rest (Wang & Manning 2012), with this additive smoothing.
    pub nb_alpha: f64,
    /// Keep at most this many weights (largest magnitude) per class; bounds the model size with
    /// thousands of classes. `0` keeps all.
    pub max_weights_per_class: usize,
}

/// Training matrix in compressed sparse rows.
pub(crate) struct Rows<'a> {
    pub rows: &'a [SparseVec],
    pub n_cols: usize,
}

/// Feature-major sparse weights: for column `j`, entries `offsets[j]..offsets[j+1]` of
/// `classes`/`values`; plus one bias per class.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinearWeights {
    pub n_classes: usize,
    pub offsets: Vec<u32>,
    pub classes: Vec<u32>,
    pub values: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LinearWeights {
    /// Decision values of every class for `x`.
    pub fn scores(&self, x: &SparseVec) -> Vec<f32> {
        let mut scores = self.bias.clone();
        for (&j, &v) in x.indices.iter().zip(&x.values) {
            let j = j as usize;
            let (Some(&start), Some(&end)) = (self.offsets.get(j), self.offsets.get(j + 1)) else {
                continue;
            };
            let (Some(classes), Some(weights)) = (
                self.classes.get(start as usize..end as usize),
                self.values.get(start as usize..end as usize),
            ) else {
                continue;
            };
            for (&c, &w) in classes.iter().zip(weights) {
                if let Some(s) = scores.get_mut(c as usize) {
                    *s += v * w;
                }
            }
        }
        scores
    }

    /// `self + factor × other` (same shape), which is again one linear model: an ensemble of
    /// linear scorers costs no more at prediction time than a single one.
    pub fn add_scaled(&self, other: &LinearWeights, factor: f32) -> LinearWeights {
        let n_cols = self.offsets.len().saturating_sub(1);
        let mut out = LinearWeights {
            n_classes: self.n_classes,
            offsets: Vec::with_capacity(n_cols + 1),
            classes: Vec::with_capacity(self.classes.len()),
            values: Vec::with_capacity(self.values.len()),
            bias: self
                .bias
                .iter()
                .zip(&other.bias)
                .map(|(a, b)| a + factor * b)
                .collect(),
        };
        out.offsets.push(0);
        let mut column: Vec<(u32, f32)> = Vec::new();
        for j in 0..n_cols {
            column.clear();
            for (m, f) in [(self, 1.0), (other, factor)] {
                if let (Some(&a), Some(&b)) = (m.offsets.get(j), m.offsets.get(j + 1)) {
                    for k in a as usize..b as usize {
                        column.push((m.classes[k], m.values[k] * f));
                    }
                }
            }
            column.sort_unstable_by_key(|e| e.0);
            for &(c, v) in &column {
                match (out.classes.last(), out.values.last_mut()) {
                    (Some(&last), Some(value))
                        if last == c && out.classes.len() > out.offsets[j] as usize =>
                    {
                        *value += v;
                    }
                    _ => {
                        out.classes.push(c);
                        out.values.push(v);
                    }
                }
            }
            out.offsets.push(out.classes.len() as u32);
        }
        out
    }

    /// Checks internal consistency (after loading a file).
    pub fn validate(&self, n_cols: usize) -> Result<(), String> {
        if self.offsets.len() != n_cols + 1 {
            return Err(format!(
                "weights have {} columns, vocabulary {}",
                self.offsets.len().saturating_sub(1),
                n_cols
            ));
        }
        if self.classes.len() != self.values.len() || self.bias.len() != self.n_classes {
            return Err("weight arrays disagree in length".into());
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1])
            || self.offsets.last().map(|&l| l as usize) != Some(self.classes.len())
        {
            return Err("weight offsets are not monotone".into());
        }
        if self.classes.iter().any(|&c| c as usize >= self.n_classes) {
            return Err("weight refers to an unknown class".into());
        }
        Ok(())
    }
}

/// Trains one binary SVM per class (in parallel) and assembles the sparse weights.
/// `y[i]` is the class index of row `i`.
pub(crate) fn train_ovr(
    data: &Rows<'_>,
    y: &[u32],
    n_classes: usize,
    params: &SvmParams,
) -> LinearWeights {
    let column_mass = (params.nb_alpha > 0.0).then(|| column_mass(data));
    let per_class: Vec<(Vec<(u32, f32)>, f32)> = (0..n_classes)
        .into_par_iter()
        .map(|class| {
            let labels: Vec<bool> = y.iter().map(|&c| c as usize == class).collect();
            let scale = column_mass
                .as_deref()
                .map(|total| nb_ratios(data, &labels, total, params.nb_alpha));
            let (mut w, b) = train_binary(
                data,
                &labels,
                scale.as_deref(),
                params,
                params.seed ^ ((class as u64) << 1),
            );
            if let Some(r) = &scale {
                w.iter_mut().zip(r).for_each(|(w, r)| *w *= r);
            }
            let mut sparse: Vec<(u32, f32)> = w
                .iter()
                .enumerate()
                .filter(|&(_, &v)| v != 0.0)
                .map(|(j, &v)| (j as u32, v as f32))
                .collect();
            let keep = params.max_weights_per_class;
            if keep > 0 && sparse.len() > keep {
                sparse.select_nth_unstable_by(keep - 1, |a, b| b.1.abs().total_cmp(&a.1.abs()));
                sparse.truncate(keep);
                sparse.sort_unstable_by_key(|e| e.0);
            }
            (sparse, b as f32)
        })
        .collect();

    LinearWeights::from_class_major(&per_class, data.n_cols)
}

impl LinearWeights {
    /// Assembles feature-major weights from per-class `(sparse weights, bias)` by counting
    /// sort.
    pub(crate) fn from_class_major(per_class: &[(Vec<(u32, f32)>, f32)], n_cols: usize) -> Self {
        let mut counts = vec![0u32; n_cols + 1];
        for (w, _) in per_class {
            for &(j, _) in w {
                counts[j as usize + 1] += 1;
            }
        }
        for j in 0..n_cols {
            counts[j + 1] += counts[j];
        }
        let offsets = counts.clone();
        let total = offsets[n_cols] as usize;
        let mut classes = vec![0u32; total];
        let mut values = vec![0f32; total];
        let mut cursor = counts;
        for (class, (w, _)) in per_class.iter().enumerate() {
            for &(j, v) in w {
                let k = cursor[j as usize] as usize;
                classes[k] = class as u32;
                values[k] = v;
                cursor[j as usize] += 1;
            }
        }
        LinearWeights {
            n_classes: per_class.len(),
            offsets,
            classes,
            values,
            bias: per_class.iter().map(|p| p.1).collect(),
        }
    }
}

/// Sum of every column over all rows.
fn column_mass(data: &Rows<'_>) -> Vec<f64> {
    let mut total = vec![0f64; data.n_cols];
    for x in data.rows {
        for (&j, &v) in x.indices.iter().zip(&x.values) {
            total[j as usize] += f64::from(v);
        }
    }
    total
}

/// Smoothed log-count ratios `ln((p/|p|₁) / (q/|q|₁))` of the positive vs negative feature mass.
/// Only positive rows are visited (negatives are `total − positive`), so a rare class costs
/// O(columns), not O(all non-zeros).
fn nb_ratios(data: &Rows<'_>, positive: &[bool], total: &[f64], alpha: f64) -> Vec<f64> {
    let mut p = vec![0f64; data.n_cols];
    for (x, _) in data.rows.iter().zip(positive).filter(|(_, pos)| **pos) {
        for (&j, &v) in x.indices.iter().zip(&x.values) {
            p[j as usize] += f64::from(v);
        }
    }
    let q: Vec<f64> = total
        .iter()
        .zip(&p)
        .map(|(t, p)| (t - p).max(0.0) + alpha)
        .collect();
    p.iter_mut().for_each(|p| *p += alpha);
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    p.iter()
        .zip(&q)
        .map(|(p, q)| ((p / sp) / (q / sq)).ln())
        .collect()
}

/// Without an upper bound on α (squared hinge), only the `PG > PGmax_old` shrinking rule applies.
/// Dual coordinate descent for `min ½‖w‖² + Σ C_i max(0, 1 − y_i w·x_i)²` with shrinking.
/// Returns the dense weights and the bias weight.
fn train_binary(
    data: &Rows<'_>,
    positive: &[bool],
    scale: Option<&[f64]>,
    params: &SvmParams,
    seed: u64,
) -> (Vec<f64>, f64) {
    let r = |j: u32| scale.map_or(1.0, |s| s[j as usize]);
    let n = data.rows.len();
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = n - n_pos;
    let mut w = vec![0f64; data.n_cols];
    let mut w_bias = 0f64;
    if n == 0 {
        return (w, w_bias);
    }
    let pos_weight = if n_pos > 0 && params.balance > 0.0 {
        (n_neg.max(1) as f64 / n_pos as f64).powf(params.balance)
    } else {
        1.0
    };
    let diag: Vec<f64> = positive
        .iter()
        .map(|&p| 0.5 / (params.c * if p { pos_weight } else { 1.0 }))
        .collect();
    let qd: Vec<f64> = data
        .rows
        .iter()
        .zip(&diag)
        .map(|(x, d)| {
            x.indices
                .iter()
                .zip(&x.values)
                .map(|(&j, &v)| (f64::from(v) * r(j)).powi(2))
                .sum::<f64>()
                + params.bias * params.bias
                + d
        })
        .collect();
    let sign = |i: usize| if positive[i] { 1.0 } else { -1.0 };
    let mut alpha = vec![0f64; n];
    let mut active: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pg_max_old = f64::INFINITY;

    for _ in 0..params.max_iter {
        active.shuffle(&mut rng);
        let mut pg_max = f64::NEG_INFINITY;
        let mut pg_min = f64::INFINITY;
        let mut s = 0;
        while s < active.len() {
            let i = active[s];
            let x = &data.rows[i];
            let yi = sign(i);
            let dot: f64 = x
                .indices
                .iter()
                .zip(&x.values)
                .map(|(&j, &v)| w[j as usize] * f64::from(v) * r(j))
                .sum::<f64>()
                + w_bias * params.bias;
            let g = yi * dot - 1.0 + alpha[i] * diag[i];
            let mut pg = 0.0;
            if alpha[i] == 0.0 {
                if g > pg_max_old {
                    active.swap_remove(s);
                    continue;
                } else if g < 0.0 {
                    pg = g;
                }
            } else {
                pg = g;
            }
            pg_max = pg_max.max(pg);
            pg_min = pg_min.min(pg);
            if pg.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (old - g / qd[i]).max(0.0);
                let d = (alpha[i] - old) * yi;
                for (&j, &v) in x.indices.iter().zip(&x.values) {
                    w[j as usize] += d * f64::from(v) * r(j);
                }
                w_bias += d * params.bias;
            }
            s += 1;
        }
        if pg_max - pg_min <= params.eps {
            if active.len() == n {
                break;
            }
            active = (0..n).collect();
            pg_max_old = f64::INFINITY;
            continue;
        }
        pg_max_old = if pg_max <= 0.0 { f64::INFINITY } else { pg_max };
    }
    (w, w_bias * params.bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_three_classes() {
        let rows = vec![
            SparseVec::from_pairs(&[(0, 1.0)]),
            SparseVec::from_pairs(&[(0, 0.9), (3, 0.1)]),
            SparseVec::from_pairs(&[(1, 1.0)]),
            SparseVec::from_pairs(&[(1, 0.8), (3, 0.2)]),
            SparseVec::from_pairs(&[(2, 1.0)]),
            SparseVec::from_pairs(&[(2, 0.7), (3, 0.3)]),
        ];
        let y = [0, 0, 1, 1, 2, 2];
        let params = SvmParams {
            c: 1.0,
            eps: 0.01,
            max_iter: 100,
            balance: 0.0,
            bias: 1.0,
            seed: 1,
            nb_alpha: 0.0,
            max_weights_per_class: 0,
        };
        let w = train_ovr(
            &Rows {
                rows: &rows,
                n_cols: 4,
            },
            &y,
            3,
            &params,
        );
        assert!(w.validate(4).is_ok());
        for (x, &c) in rows.iter().zip(&y) {
            let s = w.scores(x);
            let best = (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
            assert_eq!(best, c as usize);
        }
        let pruned = train_ovr(
            &Rows {
                rows: &rows,
                n_cols: 4,
            },
            &y,
            3,
            &SvmParams {
                max_weights_per_class: 1,
                nb_alpha: 0.1,
                ..params
            },
        );
        assert!(pruned.validate(4).is_ok());
        assert_eq!(pruned.values.len(), 3);
        let sum = pruned.add_scaled(&w, 0.5);
        assert!(sum.validate(4).is_ok());
        let (a, b, s) = (
            pruned.scores(&rows[0]),
            w.scores(&rows[0]),
            sum.scores(&rows[0]),
        );
        for c in 0..3 {
            assert!((s[c] - (a[c] + 0.5 * b[c])).abs() < 1e-5);
        }
    }
}
