//! Output formats of `asc classify` (docs/architecture.md, "Command-line contract"): a table for
//! people, JSON for programs, CSV for spreadsheets, and the DCASE submission format
//! (`docs/datasets.md`).

use super::{InferError, Prediction};
use crate::error::UnknownName;
use std::fmt::Write;
use std::path::PathBuf;

/// Names accepted by `--format`.
pub const FORMAT_NAMES: &[&str] = &["table", "json", "csv", "dcase"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    Dcase,
}

impl std::str::FromStr for Format {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "dcase" => Ok(Format::Dcase),
            other => Err(UnknownName::new("format", other, FORMAT_NAMES)),
        }
    }
}

/// One input's outcome: its prediction or why it failed.
pub type Outcome = (PathBuf, Result<Prediction, InferError>);

/// Renders all outcomes for stdout. Failed files appear in `table` and `json` (as
/// `{"file", "error"}`); `csv` and `dcase` hold results only (errors go to stderr).
pub fn render(format: Format, labels: &[String], results: &[Outcome], top_k: usize) -> String {
    match format {
        Format::Table => table(labels, results, top_k.max(1)),
        Format::Json => json(labels, results),
        Format::Csv => delimited(labels, results, ',', "file,label"),
        Format::Dcase => delimited(labels, results, '\t', "filename\tscene_label"),
    }
}

fn table(labels: &[String], results: &[Outcome], top_k: usize) -> String {
    let width = results
        .iter()
        .map(|(p, _)| p.display().to_string().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!("{:<width$}  prediction\n", "file");
    for (path, r) in results {
        let shown = match r {
            Ok(p) => p
                .top_k(labels, top_k)
                .iter()
                .map(|(l, s)| format!("{l} {:.3}", s))
                .collect::<Vec<_>>()
                .join("  "),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(out, "{:<width$}  {shown}", path.display());
    }
    out
}

fn json(labels: &[String], results: &[Outcome]) -> String {
    let scores = |s: &[f32]| -> serde_json::Map<String, serde_json::Value> {
        labels
            .iter()
            .zip(s)
            .map(|(l, &p)| (l.clone(), serde_json::json!(p)))
            .collect()
    };
    let items: Vec<serde_json::Value> = results
        .iter()
        .map(|(path, r)| match r {
            Ok(p) => serde_json::json!({
                "file": path.display().to_string(),
                "label": p.label,
                "scores": scores(&p.scores),
                "windows": p.windows.iter().map(|w| serde_json::json!({
                    "start": w.start,
                    "end": w.end,
                    "label": w.label,
                    "scores": scores(&w.scores),
                })).collect::<Vec<_>>(),
            }),
            Err(e) => {
                serde_json::json!({"file": path.display().to_string(), "error": e.to_string()})
            }
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&items).expect("plain data serialises");
    s.push('\n');
    s
}

/// A header, then one row per classified file: name, argmax, one probability per class.
fn delimited(labels: &[String], results: &[Outcome], sep: char, head: &str) -> String {
    let mut out = head.to_string();
    for l in labels {
        out.push(sep);
        out.push_str(l);
    }
    out.push('\n');
    for (path, r) in results {
        if let Ok(p) = r {
            let name = if sep == '\t' {
                // DCASE lists name files relative to the data set root, without `audio/`.
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                )
            } else {
                path.display().to_string()
            };
            let _ = write!(out, "{name}{sep}{}", p.label);
            for s in &p.scores {
                let _ = write!(out, "{sep}{s:.6}");
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FileError;
    use std::path::Path;

    fn outcomes() -> (Vec<String>, Vec<Outcome>) {
        let labels = vec!["bus".to_string(), "park".to_string()];
        let p = Prediction {
            label: "park".into(),
            scores: vec![0.25, 0.75],
            windows: vec![],
        };
        (
            labels,
            vec![
                (PathBuf::from("a/x.wav"), Ok(p)),
                (
                    PathBuf::from("b.wav"),
                    Err(FileError::new(Path::new("b.wav"), "truncated").into()),
                ),
            ],
        )
    }

    #[test]
    fn dcase_format_is_tab_separated_with_header() {
        let (labels, r) = outcomes();
        let s = render(Format::Dcase, &labels, &r, 1);
        assert_eq!(
            s,
            "filename\tscene_label\tbus\tpark\nx.wav\tpark\t0.250000\t0.750000\n"
        );
    }

    #[test]
    fn json_has_errors_per_file() {
        let (labels, r) = outcomes();
        let v: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &labels, &r, 1)).unwrap();
        assert_eq!(v[0]["label"], "park");
        assert_eq!(v[0]["scores"]["bus"], 0.25);
        assert_eq!(v[1]["error"], "b.wav: truncated");
    }

    #[test]
    fn table_shows_top_k() {
        let (labels, r) = outcomes();
        let s = render(Format::Table, &labels, &r, 2);
        assert!(s.contains("park 0.750  bus 0.250"), "{s}");
        assert!(s.contains("error: b.wav: truncated"), "{s}");
    }
}
