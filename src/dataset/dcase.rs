//! Reader of the DCASE layout (docs/datasets.md "Dataset layout"): `meta.csv` lists every clip with
//! its label and location; `evaluation_setup/fold{K}_{train,evaluate,test}.csv` list the splits.
//! Evaluation sets have no labels: a `meta.csv` or a test list with only `filename` is accepted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{
    city_from_identifier, device_from_filename, escapes_root, Clip, Dataset, DatasetError,
    LabelMap, Layout, LoadOptions, LoadReport, Split,
};

/// A TAB-separated file with a header line.
struct Table {
    path: PathBuf,
    header: Vec<String>,
    /// (1-based line number, fields); blank lines are dropped.
    rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    fn read(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // A byte-order mark (spreadsheet exports) would otherwise hide the `filename` column.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, head)) = lines.next() else {
            return Err(DatasetError::BadHeader {
                path: path.to_path_buf(),
                line: 1,
                message: "file is empty".into(),
            });
        };
        let header: Vec<String> = head.split('\t').map(|s| s.trim().to_string()).collect();
        if !header.iter().any(|h| h == "filename") {
            return Err(DatasetError::BadHeader {
                path: path.to_path_buf(),
                line: 1,
                message: format!(
                    "no `filename` column in {head:?} (expected a TAB-separated header such as \
                     `filename<TAB>scene_label`)"
                ),
            });
        }
        let rows = lines
            .map(|(n, l)| (n, l.split('\t').map(|s| s.trim().to_string()).collect()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Checks the column count and the filename of a row; returns the filename.
    fn check_row<'a>(&self, line: usize, fields: &'a [String]) -> Result<&'a str, DatasetError> {
        if fields.len() != self.header.len() {
            return Err(DatasetError::Malformed {
                path: self.path.clone(),
                line,
                expected: self.header.len(),
                found: fields.len(),
            });
        }
        let name = &fields[self.column("filename").unwrap_or(0)];
        if name.is_empty() {
            return Err(DatasetError::EmptyField {
                path: self.path.clone(),
                line,
                column: "filename".into(),
            });
        }
        if escapes_root(name) {
            return Err(DatasetError::PathEscapes {
                path: self.path.clone(),
                line,
                filename: name.clone(),
            });
        }
        Ok(name)
    }
}

pub(super) fn open(root: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let meta_path = root.join("meta.csv");
    if !meta_path.is_file() {
        return Err(DatasetError::MissingFile {
            path: meta_path,
            what: "DCASE meta.csv".into(),
        });
    }
    let mut report = LoadReport::default();
    let (labels, clips, skipped) = read_meta(root, &meta_path, opts, &mut report)?;
    let by_name: HashMap<&str, usize> = clips
        .iter()
        .enumerate()
        .map(|(i, c)| (c.filename.as_str(), i))
        .collect();

    let mut lists: [Vec<usize>; 3] = Default::default();
    let mut found_any = false;
    let splits = [Split::Train, Split::Evaluate, Split::Test];
    for (k, split) in splits.into_iter().enumerate() {
        let setup = root.join("evaluation_setup");
        let path = match (&opts.train_list, split) {
            (Some(name), Split::Train) => {
                if escapes_root(name) {
                    return Err(DatasetError::InvalidArgument(format!(
                        "train list {name:?} must be a file name inside evaluation_setup/"
                    )));
                }
                let p = setup.join(name);
                if !p.is_file() {
                    return Err(DatasetError::MissingFile {
                        path: p,
                        what: "requested train list".into(),
                    });
                }
                p
            }
            _ => setup.join(format!("fold{}_{}.csv", opts.fold, split.name())),
        };
        if !path.is_file() {
            continue;
        }
        found_any = true;
        let train_set: HashSet<usize> = lists[0].iter().copied().collect();
        let ctx = FoldCtx {
            labels: &labels,
            clips: &clips,
            by_name: &by_name,
            skipped: &skipped,
            train: (split == Split::Evaluate).then_some(&train_set),
        };
        lists[k] = read_fold(&path, &ctx, opts, &mut report)?;
    }
    if !found_any {
        return Err(DatasetError::MissingFile {
            path: root
                .join("evaluation_setup")
                .join(format!("fold{}_{{train,evaluate,test}}.csv", opts.fold)),
            what: format!("no list file for fold {}", opts.fold),
        });
    }
    let [train, evaluate, test] = lists;
    if train.is_empty() && evaluate.is_empty() && test.is_empty() {
        return Err(DatasetError::Empty {
            root: root.to_path_buf(),
            hint: format!("every list of fold {} is empty", opts.fold),
        });
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        layout: Layout::Dcase,
        labels,
        clips,
        train,
        evaluate,
        test,
        report,
    })
}

/// Reads meta.csv; returns the labels, the clips and the names of skipped rows (so that a fold
/// list does not report them a second time).
fn read_meta(
    root: &Path,
    path: &Path,
    opts: &LoadOptions,
    report: &mut LoadReport,
) -> Result<(LabelMap, Vec<Clip>, HashSet<String>), DatasetError> {
    let table = Table::read(path)?;
    let col_label = table.column("scene_label");
    let col_id = table.column("identifier");
    // Pass 1: valid rows and their label names.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut skipped = HashSet::new();
    let mut rows: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    for (line, fields) in &table.rows {
        let line = *line;
        let res = (|| {
            let name = table.check_row(line, fields)?;
            if let Some(&first_line) = seen.get(name) {
                return Err(DatasetError::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    filename: name.to_string(),
                    first_line,
                });
            }
            let label = col_label.map(|c| fields[c].clone());
            if label.as_deref() == Some("") {
                return Err(DatasetError::EmptyField {
                    path: path.to_path_buf(),
                    line,
                    column: "scene_label".into(),
                });
            }
            if opts.check_audio && !root.join(name).is_file() {
                return Err(DatasetError::MissingAudio {
                    path: path.to_path_buf(),
                    line,
                    audio: root.join(name),
                });
            }
            let id = col_id.map(|c| fields[c].clone()).filter(|s| !s.is_empty());
            Ok((name.to_string(), label, id))
        })();
        match res {
            Ok(row) => {
                seen.insert(row.0.clone(), line);
                rows.push(row);
            }
            Err(e) => {
                if let Some(name) = fields.get(table.column("filename").unwrap_or(0)) {
                    if !seen.contains_key(name) {
                        skipped.insert(name.clone());
                    }
                }
                report.handle(e, opts.skip_bad)?;
            }
        }
    }
    let labels = LabelMap::new(rows.iter().filter_map(|r| r.1.clone()));
    let clips = rows
        .into_iter()
        .map(|(filename, label, id)| Clip {
            path: root.join(&filename),
            device: device_from_filename(&filename),
            label: label.and_then(|l| labels.index(&l)),
            city: id.as_deref().and_then(city_from_identifier),
            location: id,
            filename,
        })
        .collect();
    Ok((labels, clips, skipped))
}

struct FoldCtx<'a> {
    labels: &'a LabelMap,
    clips: &'a [Clip],
    by_name: &'a HashMap<&'a str, usize>,
    skipped: &'a HashSet<String>,
    /// The train list, when reading the evaluate list (to catch leaks).
    train: Option<&'a HashSet<usize>>,
}

fn read_fold(
    path: &Path,
    ctx: &FoldCtx<'_>,
    opts: &LoadOptions,
    report: &mut LoadReport,
) -> Result<Vec<usize>, DatasetError> {
    let table = Table::read(path)?;
    let col_label = table.column("scene_label");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, fields) in &table.rows {
        let line = *line;
        let res = (|| -> Result<Option<usize>, DatasetError> {
            let name = table.check_row(line, fields)?;
            if ctx.skipped.contains(name) {
                return Ok(None); // already reported for meta.csv
            }
            let Some(&idx) = ctx.by_name.get(name) else {
                return Err(DatasetError::UnknownFile {
                    path: path.to_path_buf(),
                    line,
                    filename: name.to_string(),
                });
            };
            if let Some(&first_line) = seen.get(&idx) {
                return Err(DatasetError::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    filename: name.to_string(),
                    first_line,
                });
            }
            if let Some(label) = col_label.map(|c| fields[c].as_str()) {
                if !label.is_empty() {
                    let Some(li) = ctx.labels.index(label) else {
                        return Err(DatasetError::UnknownLabel {
                            path: path.to_path_buf(),
                            line,
                            label: label.to_string(),
                        });
                    };
                    if ctx.clips[idx].label != Some(li) {
                        let meta_label = ctx.clips[idx]
                            .label
                            .and_then(|m| ctx.labels.name(m))
                            .unwrap_or("<none>");
                        return Err(DatasetError::LabelMismatch {
                            path: path.to_path_buf(),
                            line,
                            filename: name.to_string(),
                            label: label.to_string(),
                            meta_label: meta_label.to_string(),
                        });
                    }
                }
            }
            if ctx.train.is_some_and(|t| t.contains(&idx)) {
                return Err(DatasetError::SplitOverlap {
                    path: path.to_path_buf(),
                    line,
                    filename: name.to_string(),
                });
            }
            seen.insert(idx, line);
            Ok(Some(idx))
        })();
        match res {
            Ok(Some(idx)) => out.push(idx),
            Ok(None) => {}
            Err(e) => report.handle(e, opts.skip_bad)?,
        }
    }
    Ok(out)
}
