//! The trained classifier: training (with the auto-dispatch threshold chosen by internal
//! cross-validation), prediction, and a compact binary file format.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::centroid;
use crate::data::{Example, stratified_folds};
use crate::error::{ClassifyError, Result};
use crate::features::{self, FeatureConfig, RawDoc, SparseVec, Vocabulary};
use crate::linear::{self, LinearWeights, Rows, SvmParams};
use crate::metrics;
use crate::stack::{Knn, Meta};

/// Which classifier [`Model::train`] fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// [`Algorithm::Centroid`] with more than [`AUTO_CENTROID_ABOVE_LABELS`] labels, else
    /// [`Algorithm::Svm`].
    #[default]
    Auto,
    /// One-vs-rest NB-SVM + SVM ensemble: most accurate, but training cost grows with
    /// classes × examples (tens of classes are fine, thousands are not).
    Svm,
    /// TF-IDF nearest centroid (cosine similarity, sparse inverted-index scoring); confidences
    /// are a softmax over the [`CENTROID_SOFTMAX_TOP_K`] best scores. Trains in seconds with
    /// thousands of classes and a few examples each.
    Centroid,
}

/// [`Algorithm::Auto`] picks the centroid classifier when there are more labels than this.
pub const AUTO_CENTROID_ABOVE_LABELS: usize = 200;

/// The centroid classifier's confidence is a softmax over this many best scores (or over `k`
/// if `predict` is asked for more).
pub const CENTROID_SOFTMAX_TOP_K: usize = 10;

/// The most labels a stacked model may have (see [`TrainConfig::knn_k`]). Its logistic
/// regression gives every class a weight for every member score, so its Newton steps grow with
/// the fourth power of the labels: on 6,065 texts with 28 labels training took 139 s instead
/// of 33 s unstacked, and with 112 the Hessians alone would need tens of gigabytes. Above
/// this, models are not stacked. A variant with one weight per member shared by all classes
/// trained fast but was no more accurate than no stack on 30-180 catalog items, so it was not
/// kept (BENCHMARKS.md).
pub const STACK_MAX_LABELS: usize = 10;

impl Algorithm {
    /// The concrete algorithm for `n_labels` labels (never `Auto`).
    pub fn resolve(self, n_labels: usize) -> Algorithm {
        match self {
            Algorithm::Auto if n_labels > AUTO_CENTROID_ABOVE_LABELS => Algorithm::Centroid,
            Algorithm::Auto => Algorithm::Svm,
            other => other,
        }
    }
}

/// Training settings. `Default` gives the tuned configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Precision the auto-dispatch threshold must reach on internal cross-validation.
    pub target_precision: f64,
    /// Safety margin of the threshold, in standard errors: the Wilson lower bound of the
    /// out-of-fold precision must reach `target_precision` (`0`: the precision itself, which
    /// lands around the target on fresh data, not above it).
    pub precision_margin_z: f64,
    /// Folds of the internal cross-validation that fits the confidence calibration and the
    /// auto-dispatch threshold (`< 2` disables it: no threshold, uncalibrated confidences).
    pub threshold_folds: usize,
    /// Seed for fold assignment and solver order; training is deterministic for a given seed.
    pub seed: u64,
    /// Feature extraction.
    pub features: FeatureConfig,
    /// SVM inverse regularisation.
    pub c: f64,
    /// Class balancing exponent for the positive class of each one-vs-rest SVM (0 = none,
    /// 1 = fully balanced).
    pub class_balance: f64,
    /// Solver tolerance and iteration cap.
    pub eps: f64,
    pub max_iter: usize,
    /// NB-SVM log-count-ratio feature scaling per class; the smoothing, or 0 for a plain SVM.
    pub nb_alpha: f64,
    /// When > 0 and `nb_alpha > 0`, a plain SVM is trained too and added with this weight to
    /// the NB-SVM (the sum of linear models is one linear model, so prediction cost is unchanged).
    pub plain_weight: f64,
    /// Weight budget per member model: each class keeps its `max_weights / classes` largest
    /// weights. Bounds model size and scoring cost with thousands of classes; the default (4 M)
    /// prunes nothing with 7 classes. Pruning to 5,000 or 20,000 per class cost 0.15 accuracy
    /// points on the 7-class petition data. `0` keeps all.
    pub max_weights: usize,
    /// Which classifier to fit; the default picks by the number of labels (see [`Algorithm`]).
    /// The SVM settings above are ignored by the centroid classifier.
    pub algorithm: Algorithm,
    /// Stacking (SVM algorithm with internal cross-validation, at most [`STACK_MAX_LABELS`]
    /// labels): a cosine k-nearest-neighbour member with this `k` joins the linear ensemble,
    /// and a logistic regression fitted on both members' out-of-fold scores gives the
    /// probabilities. `0` disables it (confidence = softmax of the linear scores).
    pub knn_k: usize,
    /// Inverse L2 regularisation of the stacking logistic regression.
    pub meta_c: f64,
    /// Features in more than this share of the training texts are left out of the neighbour
    /// index (0.05: p99 classification 0.6 ms against 1.5 ms with every feature indexed, the
    /// same accuracy within 0.1 points in the 5-fold CV).
    pub knn_max_df: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            target_precision: 0.98,
            precision_margin_z: 1.0,
            threshold_folds: 5,
            seed: 42,
            features: FeatureConfig::default(),
            c: 1.0,
            class_balance: 0.0,
            eps: 0.1,
            max_iter: 200,
            nb_alpha: 0.03,
            plain_weight: 1.0,
            max_weights: 4_000_000,
            algorithm: Algorithm::Auto,
            knn_k: 10,
            meta_c: 0.3,
            knn_max_df: 0.05,
        }
    }
}

/// One ranked label with its calibrated confidence in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub label: String,
    pub confidence: f64,
}

/// Facts about how a model was trained, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub examples: usize,
    pub trained_at_unix: u64,
    pub train_seconds: f64,
    /// Accuracy of the internal cross-validation (out-of-fold), if it ran.
    pub internal_cv_accuracy: Option<f64>,
    /// Share of internal-CV items at/above the chosen threshold.
    pub internal_cv_coverage: Option<f64>,
}

/// A trained classifier. Cheap to share between threads (`&Model` is all prediction needs).
#[derive(Debug, Clone)]
pub struct Model {
    header: Header,
    vocab: Vocabulary,
    weights: LinearWeights,
    knn: Option<Knn>,
}

/// Everything but the big arrays; stored as JSON inside the model file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    version: String,
    labels: Vec<String>,
    features: FeatureConfig,
    /// Softmax temperature applied to the SVM decision values.
    temperature: f64,
    auto_threshold: Option<f64>,
    target_precision: f64,
    /// The threshold's safety margin in standard errors (files before it: none).
    #[serde(default)]
    precision_margin_z: f64,
    info: TrainingInfo,
    n_columns: usize,
    n_weights: usize,
    /// The fitted algorithm (files of format 1 are all SVM models).
    #[serde(default = "svm")]
    algorithm: Algorithm,
    /// When set, confidences are a softmax over only this many best scores (at least `k`).
    #[serde(default)]
    softmax_top_k: Option<usize>,
    /// Stacked model: the logistic regression over the member scores (linear, then
    /// neighbours); the neighbour index follows the linear weights in the file.
    #[serde(default)]
    stack: Option<Stack>,
}

/// What the header says about a stacked model.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stack {
    meta: Meta,
    knn_k: usize,
    /// Training rows and stored entries of the neighbour index.
    knn_rows: usize,
    knn_entries: usize,
}

fn svm() -> Algorithm {
    Algorithm::Svm
}

const MAGIC: &[u8; 8] = b"MINYICLS";
/// Bump when the file layout or the meaning of a stored field changes.
/// 2: header gained `algorithm` and `softmax_top_k` (format 1 files still load, as SVM models).
/// 3: header gained `stack`; a stacked model's neighbour index follows the biases (formats 1
/// and 2 still load).
pub const FORMAT_VERSION: u32 = 3;

/// The fitted text → scores pipeline, without calibration.
struct Scorer {
    vocab: Vocabulary,
    weights: LinearWeights,
    knn: Option<Knn>,
}

impl Scorer {
    fn fit(
        docs: &[&RawDoc],
        y: &[u32],
        n_classes: usize,
        config: &TrainConfig,
        algorithm: Algorithm,
        with_knn: bool,
    ) -> Self {
        let vocab = Vocabulary::fit(
            docs,
            config.features.min_df,
            config.features.block_weights(),
        );
        let rows: Vec<SparseVec> = docs.par_iter().map(|d| vocab.transform(d)).collect();
        if algorithm == Algorithm::Centroid {
            let per_class = if config.max_weights == 0 {
                0
            } else {
                config.max_weights.div_ceil(n_classes.max(1)).max(1)
            };
            let weights = centroid::train_centroids(&rows, y, n_classes, vocab.len(), per_class);
            return Self {
                vocab,
                weights,
                knn: None,
            };
        }
        let params = SvmParams {
            c: config.c,
            eps: config.eps,
            max_iter: config.max_iter,
            balance: config.class_balance,
            bias: 1.0,
            seed: config.seed,
            nb_alpha: config.nb_alpha,
            max_weights_per_class: if config.max_weights == 0 {
                0
            } else {
                config.max_weights.div_ceil(n_classes.max(1)).max(1)
            },
        };
        let data = Rows {
            rows: &rows,
            n_cols: vocab.len(),
        };
        let mut weights = linear::train_ovr(&data, y, n_classes, &params);
        if params.nb_alpha > 0.0 && config.plain_weight > 0.0 {
            let plain = linear::train_ovr(
                &data,
                y,
                n_classes,
                &SvmParams {
                    nb_alpha: 0.0,
                    ..params
                },
            );
            weights = weights.add_scaled(&plain, config.plain_weight as f32);
        }
        let knn = (with_knn && config.knn_k > 0).then(|| {
            Knn::fit(
                &rows,
                y,
                vocab.len(),
                n_classes,
                config.knn_k,
                config.knn_max_df,
            )
        });
        Self {
            vocab,
            weights,
            knn,
        }
    }

    /// The members' scores: the linear ones, then (stacked) the neighbours' ones.
    fn scores(&self, doc: &RawDoc) -> Vec<f32> {
        member_scores(&self.weights, self.knn.as_ref(), &self.vocab.transform(doc))
    }
}

fn member_scores(weights: &LinearWeights, knn: Option<&Knn>, x: &SparseVec) -> Vec<f32> {
    let mut scores = weights.scores(x);
    if let Some(knn) = knn {
        scores.extend(knn.scores(x));
    }
    scores
}

/// Softmax of `temperature × scores`, numerically stable; all-finite output summing to 1.
fn softmax(scores: &[f32], temperature: f64) -> Vec<f64> {
    let clean = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let max = scores
        .iter()
        .copied()
        .map(clean)
        .fold(f32::NEG_INFINITY, f32::max);
    if scores.is_empty() || !max.is_finite() {
        let n = scores.len().max(1) as f64;
        return vec![1.0 / n; scores.len()];
    }
    let exps: Vec<f64> = scores
        .iter()
        .map(|&s| (temperature * f64::from(clean(s) - max)).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// The temperature minimising the negative log-likelihood of the true classes (golden-section
/// search over log T; the NLL is convex in T).
fn fit_temperature(scores: &[Vec<f32>], y: &[u32]) -> f64 {
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp();
        scores
            .iter()
            .zip(y)
            .map(|(s, &c)| {
                -softmax(s, t)
                    .get(c as usize)
                    .copied()
                    .unwrap_or(0.0)
                    .max(1e-12)
                    .ln()
            })
            .sum()
    };
    let (mut lo, mut hi) = ((0.01f64).ln(), (200.0f64).ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let a = hi - ratio * (hi - lo);
        let b = lo + ratio * (hi - lo);
        if nll(a) < nll(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    ((lo + hi) / 2.0).exp()
}

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Model {
    /// Trains on `examples`. With `config.threshold_folds ≥ 2` it first runs an internal
    /// stratified cross-validation on these examples only, fits the confidence calibration to
    /// the out-of-fold scores and picks the auto-dispatch threshold as the lowest confidence
    /// whose out-of-fold precision reaches `config.target_precision` (with
    /// `config.precision_margin_z` standard errors to spare); then it trains the final
    /// model on all examples. `progress`, if given, advances once per fitted model.
    ///
    /// Stacked (SVM, `knn_k > 0`, internal CV on, at most [`STACK_MAX_LABELS`] labels): every
    /// internal fold also scores its held-out texts with a neighbour index of the fold's
    /// training rows; a logistic regression on these out-of-fold member scores gives the
    /// probabilities, and the calibration and threshold are fitted to its own out-of-fold
    /// logits (it is cross-validated over the same folds).
    ///
    /// Cost with [`Algorithm::Svm`]: `(threshold_folds + 1) × 2 × classes` binary SVMs, each a
    /// few passes over all non-zeros, on the rayon pool. Fine for tens of classes; with
    /// thousands it is far too slow. [`Algorithm::Centroid`] (the default above
    /// [`AUTO_CENTROID_ABOVE_LABELS`] labels) costs about one pass over the examples per fit
    /// (see BENCHMARKS.md, section "Classifier").
    pub fn train(
        examples: &[Example],
        config: &TrainConfig,
        progress: Option<&ProgressBar>,
    ) -> Result<Model> {
        let started = std::time::Instant::now();
        if examples.is_empty() {
            return Err(ClassifyError::Training("no training examples".into()));
        }
        if !(config.target_precision > 0.0 && config.target_precision <= 1.0) {
            return Err(ClassifyError::InvalidArgument {
                name: "target_precision",
                message: format!("must be in (0, 1], got {}", config.target_precision),
            });
        }
        if !(config.precision_margin_z >= 0.0 && config.precision_margin_z.is_finite()) {
            return Err(ClassifyError::InvalidArgument {
                name: "precision_margin_z",
                message: format!(
                    "must be a finite number ≥ 0, got {}",
                    config.precision_margin_z
                ),
            });
        }
        if !(config.c > 0.0 && config.c.is_finite()) {
            return Err(ClassifyError::InvalidArgument {
                name: "c",
                message: format!("must be positive, got {}", config.c),
            });
        }
        let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
        labels.sort_unstable();
        labels.dedup();
        let y: Vec<u32> = examples
            .iter()
            .map(|e| labels.binary_search(&e.label).unwrap_or(0) as u32)
            .collect();
        let n_classes = labels.len();
        let algorithm = config.algorithm.resolve(n_classes);
        let softmax_top_k = (algorithm == Algorithm::Centroid).then_some(CENTROID_SOFTMAX_TOP_K);

        features::warm_up();
        let docs: Vec<RawDoc> = examples
            .par_iter()
            .map(|e| features::extract(&e.text, &config.features))
            .collect();

        let folds = config.threshold_folds;
        let run_cv = folds >= 2 && examples.len() >= 2 * folds;
        // The meta-model of a stack is fitted on out-of-fold scores, so stacking needs the
        // internal cross-validation.
        let stacked = algorithm == Algorithm::Svm
            && config.knn_k > 0
            && run_cv
            && n_classes <= STACK_MAX_LABELS;
        if let Some(bar) = progress {
            bar.set_length(if run_cv { folds as u64 + 1 } else { 1 });
            bar.set_position(0);
        }

        let mut temperature = 1.0;
        let mut auto_threshold = None;
        let mut cv_accuracy = None;
        let mut cv_coverage = None;
        let mut meta = None;
        if run_cv {
            let assignment = stratified_folds(
                &examples
                    .iter()
                    .map(|e| e.label.as_str())
                    .collect::<Vec<_>>(),
                folds,
                config.seed,
            );
            let mut oof: Vec<Vec<f32>> = vec![Vec::new(); examples.len()];
            // Index of the true class in `oof[i]` (with top-k scores: its rank, or u32::MAX
            // when it is not among them).
            let mut oof_y: Vec<u32> = y.clone();
            for fold in 0..folds {
                if let Some(bar) = progress {
                    bar.set_message(format!("internal CV fold {}/{folds}", fold + 1));
                }
                let train_idx: Vec<usize> =
                    (0..docs.len()).filter(|&i| assignment[i] != fold).collect();
                let train_docs: Vec<&RawDoc> = train_idx.iter().map(|&i| &docs[i]).collect();
                let train_y: Vec<u32> = train_idx.iter().map(|&i| y[i]).collect();
                let scorer =
                    Scorer::fit(&train_docs, &train_y, n_classes, config, algorithm, stacked);
                let held: Vec<usize> = (0..docs.len()).filter(|&i| assignment[i] == fold).collect();
                let scores: Vec<(Vec<f32>, u32)> = held
                    .par_iter()
                    .map(|&i| {
                        let s = scorer.scores(&docs[i]);
                        match softmax_top_k {
                            // Keep only what the confidence depends on: the best k scores,
                            // and where the true class ranks among them.
                            Some(k) => {
                                let top = centroid::top_k(&s, k);
                                let pos = top.iter().position(|t| t.0 == y[i]);
                                let pos = pos.map_or(u32::MAX, |p| p as u32);
                                (top.into_iter().map(|t| t.1).collect(), pos)
                            }
                            None => (s, y[i]),
                        }
                    })
                    .collect();
                for (i, (s, target)) in held.into_iter().zip(scores) {
                    oof[i] = s;
                    oof_y[i] = target;
                }
                if let Some(bar) = progress {
                    bar.inc(1);
                }
            }
            if stacked {
                // Out-of-fold logits of the meta-model (cross-validated over the same folds),
                // then the meta-model on all out-of-fold member scores.
                let fits: Vec<Meta> = (0..folds)
                    .into_par_iter()
                    .map(|fold| {
                        let (x, t): (Vec<Vec<f32>>, Vec<u32>) = (0..oof.len())
                            .filter(|&i| assignment[i] != fold)
                            .map(|i| (oof[i].clone(), y[i]))
                            .unzip();
                        Meta::fit(&x, &t, n_classes, config.meta_c)
                    })
                    .collect();
                let logits: Vec<Vec<f32>> = oof
                    .iter()
                    .zip(&assignment)
                    .map(|(s, &fold)| fits[fold].logits(s))
                    .collect();
                meta = Some(Meta::fit(&oof, &y, n_classes, config.meta_c));
                oof = logits;
            }
            temperature = fit_temperature(&oof, &oof_y);
            let items: Vec<(f64, bool)> = oof
                .iter()
                .zip(&oof_y)
                .map(|(s, &c)| {
                    let p = softmax(s, temperature);
                    let (best, conf) = argmax(&p);
                    (conf, best == c as usize)
                })
                .collect();
            auto_threshold = metrics::select_threshold(
                &items,
                config.target_precision,
                config.precision_margin_z,
            );
            cv_accuracy = Some(items.iter().filter(|i| i.1).count() as f64 / items.len() as f64);
            cv_coverage = Some(metrics::auto_dispatch(&items, auto_threshold).coverage);
        }

        if let Some(bar) = progress {
            bar.set_message("final model");
        }
        let all: Vec<&RawDoc> = docs.iter().collect();
        let scorer = Scorer::fit(&all, &y, n_classes, config, algorithm, stacked);
        if let Some(bar) = progress {
            bar.inc(1);
        }

        let trained_at_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut hash = fnv(0xcbf2_9ce4_8422_2325, format!("{config:?}").as_bytes());
        for e in examples {
            hash = fnv(fnv(fnv(hash, e.label.as_bytes()), &[0]), e.text.as_bytes());
        }
        let header = Header {
            version: format!("{hash:016x}-{trained_at_unix}"),
            labels,
            features: config.features.clone(),
            temperature,
            auto_threshold,
            target_precision: config.target_precision,
            precision_margin_z: config.precision_margin_z,
            info: TrainingInfo {
                examples: examples.len(),
                trained_at_unix,
                train_seconds: started.elapsed().as_secs_f64(),
                internal_cv_accuracy: cv_accuracy,
                internal_cv_coverage: cv_coverage,
            },
            n_columns: scorer.vocab.len(),
            n_weights: scorer.weights.values.len(),
            algorithm,
            softmax_top_k,
            stack: match (meta, &scorer.knn) {
                (Some(meta), Some(knn)) => Some(Stack {
                    meta,
                    knn_k: knn.k,
                    knn_rows: knn.labels.len(),
                    knn_entries: knn.index.values.len(),
                }),
                _ => None,
            },
        };
        Ok(Model {
            header,
            vocab: scorer.vocab,
            weights: scorer.weights,
            knn: scorer.knn,
        })
    }

    /// The `k` most likely labels, best first, with calibrated confidences in `[0, 1]` that sum
    /// to at most 1. Any text is accepted (empty, huge, any script); only the first
    /// `max_chars` characters are analysed. A text without known features gets the prior-like
    /// bias ranking with low confidence.
    pub fn predict(&self, text: &str, k: usize) -> Vec<Prediction> {
        let doc = features::extract(text, &self.header.features);
        let x = self.vocab.transform(&doc);
        let scores = match &self.header.stack {
            Some(stack) => stack
                .meta
                .logits(&member_scores(&self.weights, self.knn.as_ref(), &x)),
            None => self.weights.scores(&x),
        };
        let ranked: Vec<(usize, f64)> = match self.header.softmax_top_k {
            Some(top) => {
                let best = centroid::top_k(&scores, top.max(k));
                let values: Vec<f32> = best.iter().map(|b| b.1).collect();
                let probs = softmax(&values, self.header.temperature);
                best.iter().map(|b| b.0 as usize).zip(probs).collect()
            }
            None => {
                let probs = softmax(&scores, self.header.temperature);
                let mut ranked: Vec<(usize, f64)> = probs.into_iter().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                ranked
            }
        };
        ranked
            .into_iter()
            .take(k)
            .filter_map(|(i, p)| {
                Some(Prediction {
                    label: self.header.labels.get(i)?.clone(),
                    confidence: if p.is_finite() {
                        p.clamp(0.0, 1.0)
                    } else {
                        0.0
                    },
                })
            })
            .collect()
    }

    /// Whether a prediction is confident enough to dispatch without a human.
    pub fn is_auto(&self, prediction: &Prediction) -> bool {
        self.header
            .auto_threshold
            .is_some_and(|t| prediction.confidence >= t)
    }

    /// The confidence at or above which a top prediction is dispatched automatically; `None` if
    /// no threshold reached the target precision in training (everything goes to a human).
    pub fn auto_threshold(&self) -> Option<f64> {
        self.header.auto_threshold
    }

    /// The precision the threshold was chosen for.
    pub fn target_precision(&self) -> f64 {
        self.header.target_precision
    }

    /// The safety margin, in standard errors, with which the threshold reached the target
    /// precision (0 for models trained before the margin existed).
    pub fn precision_margin_z(&self) -> f64 {
        self.header.precision_margin_z
    }

    /// A stable identifier: hash of the training data and configuration, plus training time.
    pub fn version(&self) -> &str {
        &self.header.version
    }

    /// The labels the model can predict, sorted.
    pub fn labels(&self) -> &[String] {
        &self.header.labels
    }

    /// Whether confidences come from the stacking regression over the linear and the
    /// neighbour members (see [`TrainConfig::knn_k`]).
    pub fn is_stacked(&self) -> bool {
        self.header.stack.is_some()
    }

    /// The algorithm this model was trained with (never [`Algorithm::Auto`]).
    pub fn algorithm(&self) -> Algorithm {
        self.header.algorithm
    }

    pub fn training_info(&self) -> &TrainingInfo {
        &self.header.info
    }

    /// Writes the model: `MINYICLS`, format version (u32 LE), header length (u64 LE), JSON
    /// header, then the little-endian arrays (feature ids, IDF, blocks, weight offsets, weight
    /// classes, weight values, biases).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| ClassifyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let header = serde_json::to_vec(&self.header).map_err(|e| io(e.into()))?;
        let mut buf = Vec::with_capacity(
            header.len() + self.vocab.len() * 17 + self.weights.values.len() * 8 + 64,
        );
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
        buf.extend_from_slice(&header);
        self.vocab
            .ids
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        self.vocab
            .idf
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        buf.extend_from_slice(&self.vocab.blocks);
        let w = &self.weights;
        w.offsets
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        w.classes
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        w.values
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        w.bias
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        if let (Some(_), Some(knn)) = (&self.header.stack, &self.knn) {
            let k = &knn.index;
            k.offsets
                .iter()
                .chain(&k.classes)
                .chain(&knn.labels)
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
            k.values
                .iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        }
        // Write to a sibling file and rename, so a crash never leaves a truncated model behind.
        let tmp = path.with_extension("tmp-minyi");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&buf).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a model written by [`Model::save`], checking the format version and every length.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ClassifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|message| ClassifyError::ModelFormat {
            path: path.to_path_buf(),
            message,
        })
    }

    fn from_bytes(bytes: &[u8]) -> std::result::Result<Model, String> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err("bad magic bytes".into());
        }
        let format = u32::from_le_bytes(r.array()?);
        if !(1..=FORMAT_VERSION).contains(&format) {
            return Err(format!(
                "format version {format}, this build reads {FORMAT_VERSION}"
            ));
        }
        let header_len =
            usize::try_from(u64::from_le_bytes(r.array()?)).map_err(|e| e.to_string())?;
        let header: Header =
            serde_json::from_slice(r.take(header_len)?).map_err(|e| format!("header: {e}"))?;
        let n = header.n_columns;
        let nnz = header.n_weights;
        let ids = r.vec(n, u64::from_le_bytes)?;
        let idf = r.vec(n, f32::from_le_bytes)?;
        let blocks = r.take(n)?.to_vec();
        let offsets = r.vec(n.checked_add(1).ok_or("size overflow")?, u32::from_le_bytes)?;
        let classes = r.vec(nnz, u32::from_le_bytes)?;
        let values = r.vec(nnz, f32::from_le_bytes)?;
        let bias = r.vec(header.labels.len(), f32::from_le_bytes)?;
        let knn = match &header.stack {
            Some(stack) => {
                let offsets =
                    r.vec(n.checked_add(1).ok_or("size overflow")?, u32::from_le_bytes)?;
                let rows = r.vec(stack.knn_entries, u32::from_le_bytes)?;
                let labels = r.vec(stack.knn_rows, u32::from_le_bytes)?;
                let values = r.vec(stack.knn_entries, f32::from_le_bytes)?;
                let knn = Knn {
                    index: LinearWeights {
                        n_classes: stack.knn_rows,
                        offsets,
                        classes: rows,
                        values,
                        bias: vec![0.0; stack.knn_rows],
                    },
                    labels,
                    k: stack.knn_k,
                    n_classes: header.labels.len(),
                };
                knn.validate(n)?;
                stack.meta.validate()?;
                if stack.meta.n_classes != header.labels.len()
                    || stack.meta.n_inputs != 2 * header.labels.len()
                {
                    return Err("meta-model does not match the labels".into());
                }
                Some(knn)
            }
            None => None,
        };
        if r.pos != bytes.len() {
            return Err("trailing bytes".into());
        }
        let weights = LinearWeights {
            n_classes: header.labels.len(),
            offsets,
            classes,
            values,
            bias,
        };
        weights.validate(n)?;
        let vocab = Vocabulary::from_parts(ids, idf, blocks, header.features.block_weights());
        Ok(Model {
            header,
            vocab,
            weights,
            knn,
        })
    }
}

fn argmax(p: &[f64]) -> (usize, f64) {
    p.iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
}

/// Bounds-checked little-endian reader for model files.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("size overflow")?;
        let slice = self.bytes.get(self.pos..end).ok_or("file is truncated")?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn vec<T, const N: usize>(
        &mut self,
        count: usize,
        decode: fn([u8; N]) -> T,
    ) -> std::result::Result<Vec<T>, String> {
        let bytes = self.take(count.checked_mul(N).ok_or("size overflow")?)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                decode(a)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable() {
        let p = softmax(&[1000.0, 0.0, -1000.0], 10.0);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(p.iter().all(|x| x.is_finite()));
        assert_eq!(softmax(&[], 1.0), Vec::<f64>::new());
        let p = softmax(&[f32::NAN, 1.0], 1.0);
        assert!(p.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn temperature_sharpens_confident_scores() {
        // Always right with margin 1: the likelihood grows with T, so T hits the upper range.
        let scores = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!(fit_temperature(&scores, &[0, 1]) > 50.0);
        // Right half the time: T near 0 (uniform) is best.
        let t = fit_temperature(&scores, &[0, 0]);
        assert!(t < 0.1, "{t}");
    }

    #[test]
    fn corrupt_files_are_errors() {
        assert!(Model::from_bytes(b"").is_err());
        assert!(
            Model::from_bytes(b"MINYICLS\x01\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff").is_err()
        );
        assert!(
            Model::from_bytes(b"MINYICLS\x09\x00\x00\x00")
                .unwrap_err()
                .contains("version")
        );
    }
}
