//! End-to-end tests on a tiny hand-written fixture (no external data).

use std::path::{Path, PathBuf};

use clap::Parser;
use minyi_classifier::cli::{ClassifyArgs, run};
use minyi_classifier::{Example, Model, STACK_MAX_LABELS, TrainConfig, read_csv};
use proptest::prelude::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/petitions-tiny.csv")
}

fn examples() -> Vec<Example> {
    read_csv(fixture()).unwrap()
}

fn small_config() -> TrainConfig {
    TrainConfig {
        threshold_folds: 3,
        target_precision: 0.9,
        features: minyi_classifier::FeatureConfig {
            min_df: 1,
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

fn trained() -> &'static Model {
    static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| Model::train(&examples(), &small_config(), None).unwrap())
}

#[test]
fn learns_the_fixture() {
    let model = trained();
    assert_eq!(model.labels(), ["交通运输", "教育文体", "环境保护"]);
    let cases = [
        ("公交车站太远，希望增加公交线路", "交通运输"),
        ("化工厂偷排废水，河水污染严重", "环境保护"),
        ("学校乱收补课费，老师办辅导班", "教育文体"),
    ];
    for (text, label) in cases {
        let top = model.predict(text, 3);
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].label, label, "{text}: {top:?}");
        assert!(top.windows(2).all(|w| w[0].confidence >= w[1].confidence));
        let sum: f64 = top.iter().map(|p| p.confidence).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
    assert_eq!(model.predict("公交", 1).len(), 1);
    assert!(model.predict("公交", 0).is_empty());
    assert!(!model.version().is_empty());
    let info = model.training_info();
    assert_eq!(info.examples, 30);
    assert!(info.internal_cv_accuracy.is_some());
    if let Some(t) = model.auto_threshold() {
        assert!((0.0..=1.0).contains(&t));
    }
}

#[test]
fn training_is_deterministic_and_validates_input() {
    let a = Model::train(&examples(), &small_config(), None).unwrap();
    let b = trained();
    assert_eq!(a.auto_threshold(), b.auto_threshold());
    assert_eq!(a.predict("噪音污染", 3), b.predict("噪音污染", 3));
    assert!(Model::train(&[], &small_config(), None).is_err());
    let bad = TrainConfig {
        target_precision: 1.5,
        ..small_config()
    };
    assert!(Model::train(&examples(), &bad, None).is_err());
    for z in [-1.0, f64::NAN] {
        let bad = TrainConfig {
            precision_margin_z: z,
            ..small_config()
        };
        let err = Model::train(&examples(), &bad, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("precision_margin_z"), "{err}");
    }
    // One label only: always that label, no panic.
    let one = vec![Example {
        text: "公交".into(),
        label: "x".into(),
    }];
    let model = Model::train(&one, &small_config(), None).unwrap();
    assert_eq!(model.predict("anything", 5)[0].label, "x");
}

#[test]
fn only_small_label_sets_are_stacked() {
    // The stack's logistic regression grows with the fourth power of the labels: above
    // STACK_MAX_LABELS the model is the linear ensemble alone, whatever `knn_k` says.
    let texts: Vec<String> = examples().into_iter().map(|e| e.text).collect();
    let relabelled = |labels: usize| -> Vec<Example> {
        (0..labels * 6)
            .map(|i| Example {
                text: format!("{} 编号{}", texts[i % texts.len()], i % labels),
                label: format!("L{:02}", i % labels),
            })
            .collect()
    };
    let config = small_config();
    assert!(config.knn_k > 0);
    let at_limit = Model::train(&relabelled(STACK_MAX_LABELS), &config, None).unwrap();
    assert!(at_limit.is_stacked());
    let above = Model::train(&relabelled(STACK_MAX_LABELS + 1), &config, None).unwrap();
    assert_eq!(above.labels().len(), STACK_MAX_LABELS + 1);
    assert!(!above.is_stacked());
    assert!(
        above.training_info().internal_cv_accuracy.is_some(),
        "the internal CV still ran"
    );
}

#[test]
fn save_load_roundtrip() {
    let model = trained();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    model.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert!(model.is_stacked() && loaded.is_stacked());
    assert_eq!(loaded.version(), model.version());
    assert_eq!(loaded.auto_threshold(), model.auto_threshold());
    assert_eq!(loaded.precision_margin_z(), model.precision_margin_z());
    assert_eq!(loaded.labels(), model.labels());
    for text in ["公交车站", "河水污染", "学校收费", ""] {
        assert_eq!(loaded.predict(text, 3), model.predict(text, 3));
    }
    // A model without the neighbour member (knn_k 0, or no internal CV to fit the stack on)
    // round-trips too, and predicts differently from the stacked one.
    for config in [
        TrainConfig {
            knn_k: 0,
            ..small_config()
        },
        TrainConfig {
            threshold_folds: 0,
            ..small_config()
        },
    ] {
        let plain = Model::train(&examples(), &config, None).unwrap();
        assert!(!plain.is_stacked());
        plain.save(&path).unwrap();
        let loaded = Model::load(&path).unwrap();
        assert!(!loaded.is_stacked());
        assert_eq!(loaded.predict("河水污染", 3), plain.predict("河水污染", 3));
        assert_ne!(plain.predict("河水污染", 3), model.predict("河水污染", 3));
    }
    model.save(&path).unwrap();
    // Truncated and foreign files are clear errors, not panics.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Model::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("model.bin") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(&path, b"id,text,label\n").unwrap();
    assert!(Model::load(&path).is_err());
    assert!(Model::load(dir.path().join("missing")).is_err());
}

fn check_predictions(model: &Model, text: &str) {
    let top = model.predict(text, 5);
    assert_eq!(top.len(), 3);
    for p in &top {
        assert!((0.0..=1.0).contains(&p.confidence), "{p:?}");
    }
    assert!(top.windows(2).all(|w| w[0].confidence >= w[1].confidence));
}

#[test]
fn bad_inputs_never_panic() {
    let model = trained();
    let huge: String = "噪音污染严重，".repeat(200_000 / 7 + 1);
    let inputs = [
        String::new(),
        " \n\t ".to_string(),
        huge,
        "x".repeat(200_000),
        "😀🚌🏫🌊".repeat(100),
        "學校亂收費，環境污染，交通擁堵".to_string(),
        "The bus stop near my home was removed, please restore it.".to_string(),
        "<script>alert('x')</script><div onclick=\"a()\">公交</div>".to_string(),
        "\u{0}\u{FEFF}\u{202E}\u{FFFF}ＡＢＣ１２３".to_string(),
    ];
    for text in &inputs {
        check_predictions(model, text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn predict_never_panics(text in any::<String>()) {
        check_predictions(trained(), &text);
    }

    #[test]
    fn predict_never_panics_on_cjk(text in "[\\u4e00-\\u9fff，。！a-z0-9 ]{0,300}") {
        check_predictions(trained(), &text);
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ClassifyArgs,
}

fn run_cli(args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("classify").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    run(&cli.args, &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

fn last_json(output: &str) -> serde_json::Value {
    serde_json::from_str(output.lines().last().unwrap()).unwrap()
}

#[test]
fn cli_eval_cv_train_predict() {
    let data = fixture();
    let data = data.to_str().unwrap();
    let common = ["--threshold-folds", "3", "--target-precision", "0.9"];

    let mut args = vec!["eval", "--train", data, "--test", data];
    args.extend(common);
    let json = last_json(&run_cli(&args).unwrap());
    for key in [
        "accuracy",
        "macro_f1",
        "auto_threshold",
        "auto_coverage",
        "auto_precision",
        "train_seconds",
        "p50_us",
        "p99_us",
        "calibration_error",
    ] {
        assert!(json.get(key).is_some(), "missing {key}: {json}");
    }
    assert!(json["accuracy"].as_f64().unwrap() > 0.9);
    let ece = json["calibration_error"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ece), "{ece}");

    let mut args = vec!["cv", "--data", data, "--folds", "3"];
    args.extend(common);
    let json = last_json(&run_cli(&args).unwrap());
    assert_eq!(json["folds"], 3);
    assert!(json["accuracy"].as_f64().unwrap() > 0.3);
    assert!(json["calibration_error"].as_f64().is_some(), "{json}");

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.bin");
    let model = model.to_str().unwrap();
    let mut args = vec!["train", "--data", data, "--out", model];
    args.extend(common);
    let json = last_json(&run_cli(&args).unwrap());
    assert!(json["model_version"].as_str().is_some());

    let out = run_cli(&[
        "predict",
        "--model",
        model,
        "--k",
        "2",
        "化工厂废水污染河流",
    ])
    .unwrap();
    assert!(out.lines().next().unwrap().ends_with("环境保护"), "{out}");
    assert_eq!(out.lines().count(), 3);
    let json =
        last_json(&run_cli(&["predict", "--model", model, "--json", "公交站台拆除"]).unwrap());
    assert_eq!(json["predictions"][0]["label"], "交通运输");
    assert!(json["auto_dispatch"].is_boolean());
}

#[test]
fn cli_errors_name_the_problem() {
    let err = run_cli(&["eval", "--train", "/no/such.csv", "--test", "/no/such.csv"]).unwrap_err();
    assert!(err.contains("/no/such.csv"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,text,label\n1,ok,a\n2,\"x\",b,extra\n").unwrap();
    let err = run_cli(&["cv", "--data", bad.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("bad.csv") && err.contains("line 3"), "{err}");

    let data = fixture();
    let err = run_cli(&["cv", "--data", data.to_str().unwrap(), "--folds", "1"]).unwrap_err();
    assert!(err.contains("--folds"), "{err}");
    let err = run_cli(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        "/tmp/x",
        "--c",
        "0",
    ])
    .unwrap_err();
    assert!(err.contains("--c"), "{err}");
    let err = run_cli(&["predict", "--model", "/no/model.bin", "x"]).unwrap_err();
    assert!(err.contains("/no/model.bin"), "{err}");
}

/// 300 labels × 3 synthetic texts: each label has two distinctive made-up words (pairs of rare
/// CJK characters) inside shared boilerplate.
fn many_label_examples() -> Vec<Example> {
    let cjk = |i: usize| char::from_u32(0x4E00 + (i as u32 * 7919) % 20_000).unwrap();
    let mut out = Vec::new();
    for label in 0..300 {
        let a: String = [cjk(4 * label), cjk(4 * label + 1)].iter().collect();
        let b: String = [cjk(4 * label + 2), cjk(4 * label + 3)].iter().collect();
        for text in [
            format!("您好，我要反映{a}{b}的问题"),
            format!("市民来电称小区附近{a}严重，希望尽快处理{b}"),
            format!("{b}和{a}问题一直没有解决，请相关部门处理"),
        ]
        .into_iter()
        {
            out.push(Example {
                text,
                label: format!("item-{label:03}"),
            });
        }
    }
    out
}

#[test]
fn centroid_handles_many_labels() {
    use minyi_classifier::Algorithm;
    let many = many_label_examples();
    let config = TrainConfig {
        threshold_folds: 3,
        features: minyi_classifier::FeatureConfig {
            min_df: 1,
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    assert_eq!(config.algorithm, Algorithm::Auto);
    let model = Model::train(&many, &config, None).unwrap();
    assert_eq!(
        model.algorithm(),
        Algorithm::Centroid,
        "auto picks centroid"
    );
    assert_eq!(model.labels().len(), 300);
    let cv = model.training_info().internal_cv_accuracy.unwrap();
    assert!(cv > 0.9, "internal CV accuracy {cv}");
    for e in &many {
        let top = model.predict(&e.text, 5);
        assert_eq!(top.len(), 5);
        assert_eq!(top[0].label, e.label, "{}", e.text);
        assert!(top.windows(2).all(|w| w[0].confidence >= w[1].confidence));
        let sum: f64 = top.iter().map(|p| p.confidence).sum();
        assert!(sum <= 1.0 + 1e-9 && top.iter().all(|p| p.confidence >= 0.0));
    }
    assert_eq!(model.predict("", 3).len(), 3);
    assert_eq!(model.predict("任何文本", 400).len(), 300);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("centroid.model");
    model.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.algorithm(), Algorithm::Centroid);
    assert_eq!(loaded.version(), model.version());
    assert_eq!(loaded.labels(), model.labels());
    assert_eq!(loaded.auto_threshold(), model.auto_threshold());
    assert_eq!(loaded.training_info(), model.training_info());
    for e in many.iter().step_by(7) {
        assert_eq!(loaded.predict(&e.text, 5), model.predict(&e.text, 5));
    }

    // Forcing the SVM path on a few labels still works, and the small fixture stays SVM.
    assert_eq!(trained().algorithm(), Algorithm::Svm);
    let forced = Model::train(
        &examples()[..],
        &TrainConfig {
            algorithm: Algorithm::Centroid,
            ..small_config()
        },
        None,
    )
    .unwrap();
    assert_eq!(forced.algorithm(), Algorithm::Centroid);
    assert_eq!(forced.labels(), trained().labels());
}
