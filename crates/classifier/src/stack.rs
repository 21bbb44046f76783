//! Stacking for small label sets: a k-nearest-neighbour member next to the linear ensemble, and
//! a multinomial logistic regression that turns both members' scores into class probabilities.
//!
//! The linear models see which n-grams point to a class; the neighbours see which earlier
//! petitions a text resembles as a whole (a recurring complaint, a repeated template). The
//! meta-model learns how far to trust each from out-of-fold scores of the internal
//! cross-validation, so it never sees a score of a model trained on the same text.

use rayon::prelude::*;

use crate::features::SparseVec;
use crate::linear::LinearWeights;

/// Cosine k-nearest neighbours over the training rows. The rows are stored feature-major in
/// [`LinearWeights`] with one "class" per training row, so a query is an inverted-index pass
/// (cost ∝ the training rows sharing each of the text's features). Features found in more than
/// a share `max_df` of the rows (common characters, greetings) are left out of the index: they
/// carry little of the similarity and most of the cost.
#[derive(Debug, Clone)]
pub(crate) struct Knn {
    pub index: LinearWeights,
    /// Class of each training row.
    pub labels: Vec<u32>,
    pub k: usize,
    pub n_classes: usize,
}

impl Knn {
    pub fn fit(
        rows: &[SparseVec],
        y: &[u32],
        n_cols: usize,
        n_classes: usize,
        k: usize,
        max_df: f64,
    ) -> Self {
        let mut df = vec![0u32; n_cols];
        for r in rows {
            for &j in &r.indices {
                if let Some(d) = df.get_mut(j as usize) {
                    *d += 1;
                }
            }
        }
        let limit = max_df.clamp(0.0, 1.0) * rows.len() as f64;
        let per_row: Vec<(Vec<(u32, f32)>, f32)> = rows
            .iter()
            .map(|r| {
                let entries = r
                    .indices
                    .iter()
                    .copied()
                    .zip(r.values.iter().copied())
                    .filter(|&(j, _)| df.get(j as usize).is_some_and(|&d| f64::from(d) <= limit))
                    .collect();
                (entries, 0.0)
            })
            .collect();
        Self {
            index: LinearWeights::from_class_major(&per_row, n_cols),
            labels: y.to_vec(),
            k,
            n_classes,
        }
    }

    /// Per class, the summed cosine similarity of the text's `k` nearest training rows of that
    /// class (rows sharing no feature with the text never count; among rows equally similar
    /// to the k-th, the earlier rows count). `k = 0`: every row sharing a feature counts.
    pub fn scores(&self, x: &SparseVec) -> Vec<f32> {
        let mut out = vec![0f32; self.n_classes];
        let sims = self.index.scores(x);
        let relevant = |s: f32| s > 0.0 && s.is_finite();
        let mut add = |row: usize, sim: f32| {
            if let Some(o) = self.labels.get(row).and_then(|&c| out.get_mut(c as usize)) {
                *o += sim;
            }
        };
        if self.k == 0 {
            sims.iter()
                .enumerate()
                .filter(|&(_, &s)| relevant(s))
                .for_each(|(row, &s)| add(row, s));
            return out;
        }
        // One pass keeping the k best, most similar first: most rows are rejected by one
        // comparison, and nothing of the size of the training set is allocated or sorted.
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(self.k + 1);
        for (row, &s) in sims.iter().enumerate() {
            if !relevant(s) || (best.len() == self.k && s <= best[self.k - 1].0) {
                continue;
            }
            let at = best.partition_point(|&(b, _)| b >= s);
            best.insert(at, (s, row));
            best.truncate(self.k);
        }
        for (sim, row) in best {
            add(row, sim);
        }
        out
    }

    /// Checks internal consistency (after loading a file).
    pub fn validate(&self, n_cols: usize) -> Result<(), String> {
        self.index.validate(n_cols)?;
        if self.index.n_classes != self.labels.len() {
            return Err("neighbour rows and their labels disagree in number".into());
        }
        if self.labels.iter().any(|&c| c as usize >= self.n_classes) {
            return Err("neighbour row with an unknown class".into());
        }
        Ok(())
    }
}

/// Multinomial logistic regression: `logits = W · [x, 1]`, L2-regularised (`1 / (2c) ‖W‖²`
/// without the intercepts), fitted by Newton's method with a backtracking line search. Meant
/// for a handful of inputs (member scores): the Hessian has `(classes × (inputs + 1))²` entries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Meta {
    pub n_inputs: usize,
    pub n_classes: usize,
    /// Row-major `n_classes × (n_inputs + 1)`, the intercept last in each row.
    pub weights: Vec<f64>,
}

impl Meta {
    /// The logits (unnormalised log-probabilities) for one input vector.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let d = self.n_inputs + 1;
        (0..self.n_classes)
            .map(|k| {
                let row = &self.weights[k * d..(k + 1) * d];
                let dot: f64 = x
                    .iter()
                    .zip(row)
                    .map(|(&x, &w)| f64::from(x) * w)
                    .sum::<f64>()
                    + row[d - 1];
                dot as f32
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.weights.len() != self.n_classes * (self.n_inputs + 1)
            || self.weights.iter().any(|w| !w.is_finite())
        {
            return Err("meta-model weights are malformed".into());
        }
        Ok(())
    }

    pub fn fit(x: &[Vec<f32>], y: &[u32], n_classes: usize, c: f64) -> Self {
        let n_inputs = x.first().map_or(0, Vec::len);
        let d = n_inputs + 1;
        let p = n_classes * d;
        let lambda = 1.0 / c.max(1e-12);
        let mut model = Meta {
            n_inputs,
            n_classes,
            weights: vec![0.0; p],
        };
        let rows: Vec<(Vec<f64>, usize)> = x
            .iter()
            .zip(y)
            .filter(|&(row, &c)| row.len() == n_inputs && (c as usize) < n_classes)
            .map(|(row, &c)| {
                let mut v: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                v.push(1.0);
                (v, c as usize)
            })
            .collect();
        if rows.is_empty() || n_classes < 2 {
            return model;
        }
        // The intercepts are not penalised; a tiny ridge keeps the Hessian invertible (adding
        // a constant to every intercept changes nothing).
        let penalty = |j: usize| if j % d == d - 1 { 1e-8 } else { lambda };
        // Sums run over fixed chunks, added in order: the fit does not depend on how rayon
        // splits the work (training is deterministic for a seed).
        let objective = |w: &[f64]| -> f64 {
            let parts: Vec<f64> = rows
                .par_chunks(CHUNK)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|(x, c)| {
                            let z = logits_f64(w, x, n_classes);
                            log_sum_exp(&z) - z[*c]
                        })
                        .sum()
                })
                .collect();
            let nll: f64 = parts.iter().sum();
            nll + 0.5
                * w.iter()
                    .enumerate()
                    .map(|(j, v)| penalty(j) * v * v)
                    .sum::<f64>()
        };
        let mut current = objective(&model.weights);
        for _ in 0..50 {
            let w = &model.weights;
            let parts: Vec<(Vec<f64>, Vec<f64>)> = rows
                .par_chunks(CHUNK)
                .map(|chunk| {
                    let (mut g, mut h) = (vec![0.0; p], vec![0.0; p * p]);
                    for (x, c) in chunk {
                        add_gradient_and_hessian(w, x, *c, n_classes, &mut g, &mut h);
                    }
                    (g, h)
                })
                .collect();
            let (mut grad, mut hess) = (vec![0.0; p], vec![0.0; p * p]);
            for (g, h) in parts {
                grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
                hess.iter_mut().zip(h).for_each(|(a, b)| *a += b);
            }
            // Mirror the upper class blocks and add the penalty.
            for a in 0..p {
                for b in 0..p {
                    if b / d < a / d {
                        hess[a * p + b] = hess[b * p + a];
                    }
                }
                grad[a] += penalty(a) * w[a];
                hess[a * p + a] += penalty(a);
            }
            let Some(step) = solve_spd(&hess, &grad, p) else {
                break;
            };
            let decrease: f64 = step.iter().zip(&grad).map(|(s, g)| s * g).sum();
            if decrease < 1e-9 * (1.0 + current.abs()) {
                break;
            }
            let mut t = 1.0;
            let mut accepted = false;
            for _ in 0..30 {
                let trial: Vec<f64> = w.iter().zip(&step).map(|(w, s)| w - t * s).collect();
                let value = objective(&trial);
                if value <= current - 1e-4 * t * decrease {
                    model.weights = trial;
                    current = value;
                    accepted = true;
                    break;
                }
                t *= 0.5;
            }
            if !accepted {
                break;
            }
        }
        model
    }
}

/// Adds one row's negative log-likelihood gradient to `g` and its Hessian to `h` (row-major
/// `p × p`, `p = n_classes × x.len()`; only the blocks of class pairs `k ≤ l` are filled).
fn add_gradient_and_hessian(
    w: &[f64],
    x: &[f64],
    class: usize,
    n_classes: usize,
    g: &mut [f64],
    h: &mut [f64],
) {
    let d = x.len();
    let p = n_classes * d;
    let probs = softmax_f64(&logits_f64(w, x, n_classes));
    for k in 0..n_classes {
        let r = probs[k] - f64::from(u8::from(k == class));
        for (j, &xj) in x.iter().enumerate() {
            g[k * d + j] += r * xj;
        }
        for l in k..n_classes {
            let a = probs[k] * (f64::from(u8::from(k == l)) - probs[l]);
            for (i, &xi) in x.iter().enumerate() {
                let row = &mut h[(k * d + i) * p + l * d..][..d];
                row.iter_mut().zip(x).for_each(|(h, &xj)| *h += a * xi * xj);
            }
        }
    }
}

/// Rows per unit of parallel work in [`Meta::fit`].
const CHUNK: usize = 512;

fn logits_f64(w: &[f64], x: &[f64], n_classes: usize) -> Vec<f64> {
    let d = x.len();
    (0..n_classes)
        .map(|k| {
            w[k * d..(k + 1) * d]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

fn log_sum_exp(z: &[f64]) -> f64 {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn softmax_f64(z: &[f64]) -> Vec<f64> {
    let lse = log_sum_exp(z);
    z.iter().map(|v| (v - lse).exp()).collect()
}

/// Solves `A x = b` for a symmetric positive definite `n × n` matrix by Cholesky; `None` if `A`
/// is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        z[i] = (b[i] - (0..i).map(|k| l[i * n + k] * z[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (z[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_vote_by_similarity() {
        let rows = [
            SparseVec::from_pairs(&[(0, 1.0)]),
            SparseVec::from_pairs(&[(0, 0.8), (1, 0.6)]),
            SparseVec::from_pairs(&[(2, 1.0)]),
        ];
        let knn = Knn::fit(&rows, &[0, 1, 1], 3, 2, 2, 1.0);
        knn.validate(3).unwrap();
        let s = knn.scores(&SparseVec::from_pairs(&[(0, 1.0)]));
        assert!(
            (s[0] - 1.0).abs() < 1e-6 && (s[1] - 0.8).abs() < 1e-6,
            "{s:?}"
        );
        // Only the k = 2 nearest count; a row sharing nothing never does.
        let s = knn.scores(&SparseVec::from_pairs(&[(2, 0.6), (0, 0.8)]));
        assert!(
            (s[0] - 0.8).abs() < 1e-6 && (s[1] - 0.64).abs() < 1e-6,
            "{s:?}"
        );
        assert_eq!(knn.scores(&SparseVec::from_pairs(&[])), vec![0.0, 0.0]);
        // Feature 0 is in 2 of 3 rows: with max_df 0.5 it is not indexed.
        let sparse = Knn::fit(&rows, &[0, 1, 1], 3, 2, 2, 0.5);
        assert_eq!(
            sparse.scores(&SparseVec::from_pairs(&[(0, 1.0)])),
            vec![0.0, 0.0]
        );
        let s = sparse.scores(&SparseVec::from_pairs(&[(1, 1.0)]));
        assert!((s[1] - 0.6).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn the_k_nearest_are_the_most_similar_rows_earlier_rows_first_on_ties() {
        // Row i has feature 0 with weight w_i: its similarity to the query [1 on feature 0]
        // is w_i. Rows 2 and 5 tie at 0.5 for the third place: row 2 counts.
        let weights = [0.9, 0.1, 0.5, 0.7, 0.0, 0.5, 0.3];
        let rows: Vec<SparseVec> = weights
            .iter()
            .map(|&w| SparseVec::from_pairs(&[(0, w)]))
            .collect();
        let labels: Vec<u32> = (0..weights.len() as u32).collect();
        let n = weights.len();
        let query = SparseVec::from_pairs(&[(0, 1.0)]);
        let knn = Knn::fit(&rows, &labels, 1, n, 3, 1.0);
        let s = knn.scores(&query);
        let counted: Vec<usize> = (0..n).filter(|&c| s[c] > 0.0).collect();
        assert_eq!(counted, [0, 2, 3], "{s:?}");
        assert!((s[0] - 0.9).abs() < 1e-6 && (s[2] - 0.5).abs() < 1e-6);
        // More neighbours than rows sharing a feature: all of them, never the zero row.
        let all = Knn::fit(&rows, &labels, 1, n, 10, 1.0).scores(&query);
        let counted: Vec<usize> = (0..n).filter(|&c| all[c] > 0.0).collect();
        assert_eq!(counted, [0, 1, 2, 3, 5, 6]);
        let every = Knn::fit(&rows, &labels, 1, n, 0, 1.0).scores(&query);
        assert_eq!(every, all);
    }

    #[test]
    fn meta_learns_which_input_to_trust() {
        // Input 0 says the class, input 1 is noise: the fit must rank by input 0.
        let x: Vec<Vec<f32>> = (0..200)
            .map(|i| vec![if i % 2 == 0 { 1.0 } else { -1.0 }, ((i * 7) % 5) as f32])
            .collect();
        let y: Vec<u32> = (0..200).map(|i| (i % 2) as u32).collect();
        let meta = Meta::fit(&x, &y, 2, 1.0);
        meta.validate().unwrap();
        for (xi, &yi) in x.iter().zip(&y) {
            let z = meta.logits(xi);
            assert_eq!(usize::from(z[1] > z[0]), yi as usize);
        }
        // Stronger regularisation, smaller weights.
        let weak = Meta::fit(&x, &y, 2, 0.01);
        assert!(weak.weights[0].abs() < meta.weights[0].abs());
    }

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve_spd(&a, &[2.0, 1.0], 2).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(solve_spd(&[-1.0], &[1.0], 1).is_none());
    }
}
