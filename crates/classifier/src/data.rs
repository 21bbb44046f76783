//! Labelled examples: CSV input and stratified fold assignment.

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{ClassifyError, Result};

/// One labelled message. Labels are arbitrary strings (a category name or a catalog item code).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub text: String,
    pub label: String,
}

/// Reads a CSV file with the header `id,text,label` (column order free, extra columns ignored,
/// a UTF-8 byte-order mark tolerated). Fields may be quoted and contain commas and newlines.
///
/// A malformed row or a missing/empty label is an error naming the file and the line.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Vec<Example>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ClassifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv(&bytes, path)
}

fn parse_csv(bytes: &[u8], path: &Path) -> Result<Vec<Example>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let csv_error = |line: u64, message: String| ClassifyError::Csv {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| csv_error(1, e.to_string()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(text_col), Some(label_col)) = (column("text"), column("label")) else {
        return Err(csv_error(
            1,
            format!(
                "header must name columns `text` and `label` (found `{}`)",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    // The physical line of a record. With CRLF line endings (files saved on Windows) the csv
    // crate's `Position` of a record is the `\n` ending the line before it, and its `line()`
    // one short.
    let line_at = |p: &csv::Position| {
        let mut end = usize::try_from(p.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
        if bytes.get(end) == Some(&b'\n') {
            end += 1;
        }
        1 + bytes[..end].iter().filter(|&&b| b == b'\n').count() as u64
    };
    let mut examples = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, line_at);
            let message = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("expected {expected_len} fields, found {len}"),
                csv::ErrorKind::Utf8 { .. } => "invalid UTF-8 (the file must be UTF-8; a GBK file \
                                                 converts with `iconv -f GB18030 -t UTF-8`)"
                    .to_string(),
                _ => e.to_string(),
            };
            csv_error(line, message)
        })?;
        let line = || record.position().map_or(0, line_at);
        let (Some(text), Some(label)) = (record.get(text_col), record.get(label_col)) else {
            return Err(csv_error(line(), "missing text or label field".to_string()));
        };
        let label = label.trim();
        if label.is_empty() {
            return Err(csv_error(line(), "empty label".to_string()));
        }
        examples.push(Example {
            text: text.to_string(),
            label: label.to_string(),
        });
    }
    Ok(examples)
}

/// Assigns each example to one of `folds` folds, stratified by label and shuffled with `seed`:
/// every label is spread as evenly as possible over the folds. Returns one fold id per example.
pub fn stratified_folds<L: AsRef<str>>(labels: &[L], folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(1);
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        by_label.entry(label.as_ref()).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut assignment = vec![0; labels.len()];
    // Continue the round-robin across labels so that fold sizes stay balanced too.
    let mut next = 0;
    for indices in by_label.values_mut() {
        indices.shuffle(&mut rng);
        for &i in indices.iter() {
            assignment[i] = next % folds;
            next += 1;
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_newlines_and_bom() {
        let csv = "\u{feff}id,text,label\n1,\"a, b\nc\",x\n2,plain,y\n";
        let rows = parse_csv(csv.as_bytes(), Path::new("t.csv")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "a, b\nc");
        assert_eq!(rows[1].label, "y");
    }

    #[test]
    fn malformed_row_names_line() {
        let csv = "id,text,label\n1,ok,x\n2,\"multi\nline\",y\n3,too,many,fields\n";
        let err = parse_csv(csv.as_bytes(), Path::new("bad.csv")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.csv") && msg.contains("line 5"), "{msg}");
        // The same file saved with Windows line endings points at the same line.
        let crlf = csv.replace('\n', "\r\n");
        let msg = parse_csv(crlf.as_bytes(), Path::new("bad.csv"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 5"), "{msg}");
        let msg = parse_csv(b"id,text,label\r\n1,x,y\r\n2,x, \r\n", Path::new("e.csv"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn text_that_is_not_utf8_names_the_line_and_the_way_out() {
        let mut csv = b"id,text,label\n1,ok,x\n2,".to_vec();
        csv.extend_from_slice(&[0xb5, 0xc6]); // "灯" in GBK
        csv.extend_from_slice(b",y\n");
        let err = parse_csv(&csv, Path::new("gbk.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3: invalid UTF-8"), "{err}");
        assert!(err.contains("iconv -f GB18030 -t UTF-8"), "{err}");
    }

    #[test]
    fn missing_columns_and_empty_label_are_errors() {
        let err = parse_csv(b"id,body,label\n1,x,y\n", Path::new("h.csv")).unwrap_err();
        assert!(err.to_string().contains("line 1"));
        let err = parse_csv(b"id,text,label\n1,x, \n", Path::new("e.csv")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let labels: Vec<&str> = (0..30)
            .map(|i| if i % 3 == 0 { "a" } else { "b" })
            .collect();
        let f = stratified_folds(&labels, 5, 7);
        assert_eq!(f, stratified_folds(&labels, 5, 7));
        for fold in 0..5 {
            let a = (0..30)
                .filter(|&i| f[i] == fold && labels[i] == "a")
                .count();
            let n = f.iter().filter(|&&x| x == fold).count();
            assert_eq!(a, 2);
            assert_eq!(n, 6);
        }
    }
}
