//! minyi-classifier: an in-process CPU text classifier for Chinese citizen petitions.
//!
//! Layout:
//! - [`data`]: labelled [`Example`]s, [`read_csv`] and stratified folds.
//! - `features`: text normalisation, character 1–3-grams and jieba words (+ bigrams), hashed,
//!   sublinear TF-IDF, per-block L2 normalisation.
//! - `linear`: one-vs-rest squared-hinge SVMs trained by dual coordinate descent, one on
//!   NB-scaled features (NB-SVM) and one plain, summed into a single sparse, feature-major weight
//!   matrix (prediction cost does not grow with the ensemble, and stays proportional to the
//!   text's features × classes per feature with thousands of labels).
//! - `stack`: for small label sets, a cosine k-nearest-neighbour member beside the linear
//!   ensemble and a multinomial logistic regression over both members' scores, fitted on the
//!   out-of-fold scores of the internal cross-validation.
//! - `centroid`: TF-IDF nearest centroid with class-frequency weighting, in the same sparse
//!   feature-major weights, for label sets too large for the SVMs ([`Algorithm`]; the default
//!   picks it above 200 labels).
//! - [`model`]: [`Model::train`] (internal cross-validation → softmax temperature and
//!   auto-dispatch threshold, then the final fit), [`Model::predict`], save/load.
//! - [`metrics`]: accuracy, macro-F1, auto-dispatch coverage/precision, threshold selection.
//! - [`cli`]: `minyi classify eval|cv|train|predict`.
//!
//! Confidences are a softmax (temperature fitted on internal cross-validation) of the stacking
//! regression's logits, or of the linear scores when the model is not stacked;
//! [`Model::auto_threshold`] is the lowest confidence whose out-of-fold precision reached
//! [`TrainConfig::target_precision`] with [`TrainConfig::precision_margin_z`] standard errors to
//! spare (the Wilson lower bound; one by default). Measured numbers and the design rationale are in the
//! repository's `BENCHMARKS.md` (section "Classifier").
//!
//! ```no_run
//! use minyi_classifier::{Model, TrainConfig, read_csv};
//! let examples = read_csv("train.csv")?;
//! let model = Model::train(&examples, &TrainConfig::default(), None)?;
//! let top = model.predict("小区噪音扰民，晚上施工", 3);
//! let automatic = top.first().is_some_and(|p| model.is_auto(p));
//! # Ok::<(), minyi_classifier::ClassifyError>(())
//! ```

mod centroid;
pub mod cli;
pub mod data;
mod error;
mod features;
mod linear;
pub mod metrics;
pub mod model;
mod stack;

pub use data::{Example, read_csv, stratified_folds};
pub use error::{ClassifyError, Result};
pub use features::FeatureConfig;
pub use model::{Algorithm, Model, Prediction, STACK_MAX_LABELS, TrainConfig, TrainingInfo};
