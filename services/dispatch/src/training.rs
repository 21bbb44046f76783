//! People's decisions as training examples for the classifier: arbitration rulings and
//! dispatchers' reclassifications append a line `{text, label, source, …}` to
//! `{catalog_dir}/rulings.jsonl`, which the classification service retrains from without a
//! restart (`minyi_classification::watch`). Digits runs in the text (phone and ID numbers a
//! citizen typed) are masked before they are written.

use std::io::Write;
use std::path::Path;

/// Appends one example and syncs it to disk.
pub fn record(
    dir: &Path,
    text: &str,
    label: &str,
    extra: serde_json::Value,
) -> std::io::Result<()> {
    let mut line = serde_json::json!({
        "text": minyi_core::pii::mask_numbers(text),
        "label": label,
    });
    if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(minyi_catalog::RULINGS_FILE))?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}
