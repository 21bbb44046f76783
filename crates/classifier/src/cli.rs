//! `minyi classify …`: evaluation, cross-validation, training and prediction from the command line.
//!
//! Machine-readable results are one JSON object on the LAST line of standard output; progress bars
//! and human-readable text go to standard error (except `predict`, whose answer is the output).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::data::{Example, read_csv, stratified_folds};
use crate::error::{ClassifyError, Result};
use crate::metrics::{self, Confusion};
use crate::model::{Model, TrainConfig};

/// Arguments of `minyi classify`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    #[command(subcommand)]
    pub command: ClassifyCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClassifyCommand {
    /// Train on one CSV, evaluate on another.
    Eval {
        #[arg(long, value_name = "TRAIN.csv")]
        train: PathBuf,
        #[arg(long, value_name = "TEST.csv")]
        test: PathBuf,
        #[command(flatten)]
        options: TrainOptions,
    },
    /// Stratified k-fold cross-validation on one CSV; metrics averaged over folds.
    Cv {
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[command(flatten)]
        options: TrainOptions,
    },
    /// Train on a CSV and save the model.
    Train {
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        #[arg(long, value_name = "MODEL")]
        out: PathBuf,
        #[command(flatten)]
        options: TrainOptions,
    },
    /// Classify one text (argument, or standard input when absent).
    Predict {
        #[arg(long, value_name = "MODEL")]
        model: PathBuf,
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        text: Option<String>,
    },
}

/// Training knobs shared by `eval`, `cv` and `train`; defaults are the tuned configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainOptions {
    /// Precision the auto-dispatch threshold must reach on internal cross-validation.
    #[arg(long, default_value_t = 0.98)]
    pub target_precision: f64,
    /// Folds of the internal cross-validation that picks the threshold.
    #[arg(long, default_value_t = 5)]
    pub threshold_folds: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// SVM inverse regularisation (default: the tuned value).
    #[arg(long)]
    pub c: Option<f64>,
    /// Weight of the jieba word features relative to character n-grams (default: tuned).
    #[arg(long)]
    pub word_weight: Option<f64>,
    /// Class-balancing exponent for the one-vs-rest SVMs (default: tuned).
    #[arg(long)]
    pub class_balance: Option<f64>,
    /// Longest character n-gram (default: tuned).
    #[arg(long)]
    pub ngram_max: Option<usize>,
    /// Characters analysed per text (default: tuned).
    #[arg(long)]
    pub max_chars: Option<usize>,
    /// Advanced: a JSON object overriding any `TrainConfig` field, e.g. `{"knn_k":0}`
    /// (applied before the flags above). Not `--config`: that is `minyi`'s configuration file.
    #[arg(long, value_name = "JSON")]
    pub train_config: Option<String>,
}

impl TrainOptions {
    fn config(&self) -> Result<TrainConfig> {
        let base = match &self.train_config {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| invalid("--train-config", &format!("not a TrainConfig: {e}")))?,
            None => TrainConfig::default(),
        };
        let mut config = TrainConfig {
            target_precision: self.target_precision,
            threshold_folds: self.threshold_folds,
            seed: self.seed,
            ..base
        };
        if !(self.target_precision > 0.0 && self.target_precision <= 1.0) {
            return Err(invalid("--target-precision", "must be in (0, 1]"));
        }
        if let Some(c) = self.c {
            if !(c > 0.0 && c.is_finite()) {
                return Err(invalid("--c", "must be positive"));
            }
            config.c = c;
        }
        if let Some(w) = self.word_weight {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(invalid("--word-weight", "must be ≥ 0"));
            }
            config.features.word_weight = w as f32;
        }
        if let Some(b) = self.class_balance {
            if !(b >= 0.0 && b.is_finite()) {
                return Err(invalid("--class-balance", "must be ≥ 0"));
            }
            config.class_balance = b;
        }
        if let Some(n) = self.ngram_max {
            config.features.char_ngram_max = n;
        }
        if let Some(m) = self.max_chars {
            if m == 0 {
                return Err(invalid("--max-chars", "must be ≥ 1"));
            }
            config.features.max_chars = m;
        }
        Ok(config)
    }
}

fn invalid(name: &'static str, message: &str) -> ClassifyError {
    ClassifyError::InvalidArgument {
        name,
        message: message.to_string(),
    }
}

/// Runs a `classify` subcommand, writing its results to `out`.
pub fn run(args: &ClassifyArgs, out: &mut dyn Write) -> Result<()> {
    match &args.command {
        ClassifyCommand::Eval {
            train,
            test,
            options,
        } => {
            let config = options.config()?;
            let train = read_csv(train)?;
            let test = read_csv(test)?;
            let report = train_and_evaluate(&train, &test, &config, "eval")?;
            report.print_human();
            writeln!(out, "{}", report.to_json())?;
        }
        ClassifyCommand::Cv {
            data,
            folds,
            options,
        } => {
            if *folds < 2 {
                return Err(invalid("--folds", "must be at least 2"));
            }
            let config = options.config()?;
            let data = read_csv(data)?;
            if data.len() < *folds {
                return Err(invalid("--folds", "more folds than examples"));
            }
            let labels: Vec<&str> = data.iter().map(|e| e.label.as_str()).collect();
            let assignment = stratified_folds(&labels, *folds, config.seed);
            let mut reports = Vec::new();
            for fold in 0..*folds {
                let (mut train, mut test) = (Vec::new(), Vec::new());
                for (example, &f) in data.iter().zip(&assignment) {
                    let part = if f == fold { &mut test } else { &mut train };
                    part.push(example.clone());
                }
                let report = train_and_evaluate(
                    &train,
                    &test,
                    &config,
                    &format!("fold {}/{folds}", fold + 1),
                )?;
                report.print_human();
                reports.push(report);
            }
            writeln!(out, "{}", cv_json(&reports, *folds, data.len()))?;
        }
        ClassifyCommand::Train {
            data,
            out: model_path,
            options,
        } => {
            let config = options.config()?;
            let data = read_csv(data)?;
            let bar = progress_bar("train");
            let model = Model::train(&data, &config, Some(&bar))?;
            bar.finish_and_clear();
            model.save(model_path)?;
            let info = model.training_info();
            writeln!(
                out,
                "trained on {} examples, {} labels in {:.1} s; auto-dispatch threshold {} (target precision {}); saved to {}",
                info.examples,
                model.labels().len(),
                info.train_seconds,
                model
                    .auto_threshold()
                    .map_or("none".to_string(), |t| format!("{t:.4}")),
                model.target_precision(),
                model_path.display()
            )?;
            writeln!(
                out,
                "{}",
                json!({
                    "model_version": model.version(),
                    "auto_threshold": model.auto_threshold(),
                    "target_precision": model.target_precision(),
                    "precision_margin_z": model.precision_margin_z(),
                    "train_seconds": info.train_seconds,
                    "examples": info.examples,
                    "labels": model.labels().len(),
                    "internal_cv_accuracy": info.internal_cv_accuracy,
                    "internal_cv_coverage": info.internal_cv_coverage,
                })
            )?;
        }
        ClassifyCommand::Predict {
            model,
            k,
            json,
            text,
        } => {
            let model = Model::load(model)?;
            let text = match text {
                Some(t) => t.clone(),
                None => {
                    let mut buf = String::new();
                    std::io::stdin()
                        .read_to_string(&mut buf)
                        .map_err(|source| ClassifyError::Io {
                            path: PathBuf::from("<stdin>"),
                            source,
                        })?;
                    buf
                }
            };
            let predictions = model.predict(&text, (*k).max(1));
            let auto = predictions.first().is_some_and(|p| model.is_auto(p));
            if *json {
                writeln!(
                    out,
                    "{}",
                    json!({
                        "predictions": predictions,
                        "auto_dispatch": auto,
                        "auto_threshold": model.auto_threshold(),
                        "model_version": model.version(),
                    })
                )?;
            } else {
                for p in &predictions {
                    writeln!(out, "{:.4}\t{}", p.confidence, p.label)?;
                }
                writeln!(
                    out,
                    "auto-dispatch: {} (threshold {})",
                    if auto { "yes" } else { "no" },
                    model
                        .auto_threshold()
                        .map_or("none".to_string(), |t| format!("{t:.4}"))
                )?;
            }
        }
    }
    Ok(())
}

fn progress_bar(name: &str) -> ProgressBar {
    let bar = ProgressBar::new(1);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_prefix(name.to_string());
    bar
}

/// The result of training on one set and evaluating on another.
#[derive(Debug, Clone)]
struct EvalReport {
    name: String,
    n_test: usize,
    accuracy: f64,
    macro_f1: f64,
    auto_threshold: Option<f64>,
    auto_coverage: f64,
    auto_precision: Option<f64>,
    /// Oracle diagnostic: precision of the most confident 80 % of the test set.
    precision_at_80: Option<f64>,
    /// Expected calibration error of the top-1 confidence (10 bins).
    calibration_error: Option<f64>,
    train_seconds: f64,
    /// Wall-clock time per classification (includes any preemption on a busy machine).
    latencies_us: Vec<f64>,
    /// CPU time of the classifying thread per classification: the cost on one core.
    cpu_us: Vec<f64>,
}

impl EvalReport {
    fn p(&self, q: f64) -> f64 {
        metrics::percentile(&self.latencies_us, q)
    }

    fn print_human(&self) {
        eprintln!(
            "{}: n={} accuracy {:.4}  macro-F1 {:.4}  threshold {}  coverage {:.4}  precision {}  (oracle precision@80% {})  calibration error {}  train {:.1} s  p50 {:.0} µs  p99 {:.0} µs (CPU p99 {:.0} µs)",
            self.name,
            self.n_test,
            self.accuracy,
            self.macro_f1,
            fmt_opt(self.auto_threshold),
            self.auto_coverage,
            fmt_opt(self.auto_precision),
            fmt_opt(self.precision_at_80),
            fmt_opt(self.calibration_error),
            self.train_seconds,
            self.p(50.0),
            self.p(99.0),
            metrics::percentile(&self.cpu_us, 99.0),
        );
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "n_test": self.n_test,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "auto_threshold": self.auto_threshold,
            "auto_coverage": self.auto_coverage,
            "auto_precision": self.auto_precision,
            "precision_at_80_coverage": self.precision_at_80,
            "calibration_error": self.calibration_error,
            "train_seconds": self.train_seconds,
            "p50_us": self.p(50.0),
            "p99_us": self.p(99.0),
            "p50_cpu_us": metrics::percentile(&self.cpu_us, 50.0),
            "p99_cpu_us": metrics::percentile(&self.cpu_us, 99.0),
        })
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("none".to_string(), |v| format!("{v:.4}"))
}

fn train_and_evaluate(
    train: &[Example],
    test: &[Example],
    config: &TrainConfig,
    name: &str,
) -> Result<EvalReport> {
    let bar = progress_bar(name);
    let started = Instant::now();
    let model = Model::train(train, config, Some(&bar))?;
    let train_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Classification is timed one text at a time on this thread only.
    let mut latencies_us = Vec::with_capacity(test.len());
    let mut cpu_us = Vec::with_capacity(test.len());
    let mut predicted = Vec::with_capacity(test.len());
    let mut items = Vec::with_capacity(test.len());
    for example in test {
        let cpu = cpu_time::ThreadTime::try_now().ok();
        let t = Instant::now();
        let top = model.predict(&example.text, 1);
        latencies_us.push(t.elapsed().as_secs_f64() * 1e6);
        if let Some(used) = cpu.and_then(|c| c.try_elapsed().ok()) {
            cpu_us.push(used.as_secs_f64() * 1e6);
        }
        let (label, confidence) = top
            .into_iter()
            .next()
            .map_or((String::new(), 0.0), |p| (p.label, p.confidence));
        items.push((confidence, label == example.label));
        predicted.push(label);
    }
    let truth: Vec<&str> = test.iter().map(|e| e.label.as_str()).collect();
    let confusion = Confusion::new(&truth, &predicted);
    let auto = metrics::auto_dispatch(&items, model.auto_threshold());
    Ok(EvalReport {
        name: name.to_string(),
        n_test: test.len(),
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        auto_threshold: model.auto_threshold(),
        auto_coverage: auto.coverage,
        auto_precision: auto.precision,
        precision_at_80: metrics::precision_at_coverage(&items, 0.8),
        calibration_error: metrics::expected_calibration_error(&items, 10),
        train_seconds,
        latencies_us,
        cpu_us,
    })
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Fold-averaged metrics; latency percentiles over all folds' classifications pooled.
fn cv_json(reports: &[EvalReport], folds: usize, n: usize) -> serde_json::Value {
    let all_latencies: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.latencies_us.clone())
        .collect();
    let all_cpu: Vec<f64> = reports.iter().flat_map(|r| r.cpu_us.clone()).collect();
    json!({
        "folds": folds,
        "n": n,
        "accuracy": mean(reports.iter().map(|r| r.accuracy)),
        "macro_f1": mean(reports.iter().map(|r| r.macro_f1)),
        "auto_threshold": mean(reports.iter().filter_map(|r| r.auto_threshold)),
        "auto_coverage": mean(reports.iter().map(|r| r.auto_coverage)),
        "auto_precision": mean(reports.iter().filter_map(|r| r.auto_precision)),
        "precision_at_80_coverage": mean(reports.iter().filter_map(|r| r.precision_at_80)),
        "calibration_error": mean(reports.iter().filter_map(|r| r.calibration_error)),
        "train_seconds": mean(reports.iter().map(|r| r.train_seconds)),
        "p50_us": metrics::percentile(&all_latencies, 50.0),
        "p99_us": metrics::percentile(&all_latencies, 99.0),
        "p50_cpu_us": metrics::percentile(&all_cpu, 50.0),
        "p99_cpu_us": metrics::percentile(&all_cpu, 99.0),
        "per_fold": reports.iter().map(EvalReport::to_json).collect::<Vec<_>>(),
    })
}
