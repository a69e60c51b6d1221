//! Reading DCASE and plain layouts from tiny temporary data sets: one test per error kind, each
//! checking the file and line the error names, plus `skip_bad`.

use std::fs;
use std::path::Path;

use asc::dataset::{Dataset, DatasetError, Layout, LoadOptions, Split};

const META_HEAD: &str = "filename\tscene_label\tidentifier\tsource_label";

/// A minimal valid DCASE data set: 2 classes x 2 locations x 2 clips, train on location 0,
/// evaluate/test on location 1.
fn good_rows() -> Vec<String> {
    let mut rows = Vec::new();
    for scene in ["park", "bus"] {
        for loc in 0..2 {
            for seg in 0..2 {
                let dev = if loc == 0 { "a" } else { "s4" };
                rows.push(format!(
                    "audio/{scene}-lyon-{loc}-{seg}-{dev}.wav\t{scene}\tlyon-{loc}\t{dev}"
                ));
            }
        }
    }
    rows
}

fn write_dataset(
    root: &Path,
    meta: &[String],
    train: &[String],
    evaluate: &[String],
    test: &[String],
) {
    fs::create_dir_all(root.join("audio")).unwrap();
    fs::create_dir_all(root.join("evaluation_setup")).unwrap();
    for row in meta.iter().skip(1) {
        let name = row.split('\t').next().unwrap();
        if !name.is_empty() && !name.contains("..") && !name.starts_with('/') {
            let p = root.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"RIFF").unwrap();
        }
    }
    let lines = |v: &[String]| v.join("\n") + "\n";
    fs::write(root.join("meta.csv"), lines(meta)).unwrap();
    let es = root.join("evaluation_setup");
    fs::write(es.join("fold1_train.csv"), lines(train)).unwrap();
    fs::write(es.join("fold1_evaluate.csv"), lines(evaluate)).unwrap();
    fs::write(es.join("fold1_test.csv"), lines(test)).unwrap();
}

/// Builds (meta, train, evaluate, test) line lists for the good data set.
fn good_lists() -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let rows = good_rows();
    let mut meta = vec![META_HEAD.to_string()];
    meta.extend(rows.iter().cloned());
    let two = |r: &String| {
        let f: Vec<&str> = r.split('\t').collect();
        format!("{}\t{}", f[0], f[1])
    };
    let mut train = vec!["filename\tscene_label".to_string()];
    let mut evaluate = train.clone();
    let mut test = vec!["filename".to_string()];
    for r in &rows {
        if r.contains("-0\t") {
            train.push(two(r));
        } else {
            evaluate.push(two(r));
            test.push(r.split('\t').next().unwrap().to_string());
        }
    }
    (meta, train, evaluate, test)
}

fn open(root: &Path, skip_bad: bool) -> Result<Dataset, DatasetError> {
    Dataset::open(
        root,
        &LoadOptions {
            skip_bad,
            ..LoadOptions::default()
        },
    )
}

#[test]
fn reads_a_valid_dcase_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (m, tr, ev, te) = good_lists();
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    let ds = open(dir.path(), false).unwrap();
    assert_eq!(ds.layout, Layout::Dcase);
    assert_eq!(ds.labels.names(), ["bus", "park"]);
    assert_eq!(ds.clips.len(), 8);
    assert_eq!(
        (ds.train.len(), ds.evaluate.len(), ds.test.len()),
        (4, 4, 4)
    );
    assert_eq!(ds.split(Split::Test), ds.evaluate.as_slice());
    let c = &ds.clips[ds.train[0]];
    assert_eq!(c.filename, "audio/park-lyon-0-0-a.wav");
    assert_eq!(c.label, Some(1));
    assert_eq!(c.device.as_deref(), Some("a"));
    assert_eq!(c.city.as_deref(), Some("lyon"));
    assert_eq!(c.location.as_deref(), Some("lyon-0"));
    assert_eq!(ds.devices(), ["a", "s4"]);
    assert_eq!(ds.report.skipped(), 0);
    // Both classes have a single train location: nothing can be carved.
    let v = ds.validation_split(0.5, 1).unwrap();
    assert_eq!((v.train.len(), v.validation.len()), (4, 0));
}

#[test]
fn alternative_train_list_and_classes_of() {
    let dir = tempfile::tempdir().unwrap();
    let (m, tr, ev, te) = good_lists();
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    let subset = format!("{}\n{}\n", tr[0], tr[1]);
    fs::write(dir.path().join("evaluation_setup/split25.csv"), subset).unwrap();
    let mut opts = LoadOptions {
        train_list: Some("split25.csv".into()),
        ..LoadOptions::default()
    };
    let ds = Dataset::open(dir.path(), &opts).unwrap();
    assert_eq!(ds.train.len(), 1);
    assert_eq!(ds.evaluate.len(), 4);
    assert_eq!(ds.classes_of(&ds.train).unwrap(), [1]);
    opts.train_list = Some("split5.csv".into());
    assert!(matches!(
        Dataset::open(dir.path(), &opts),
        Err(DatasetError::MissingFile { .. })
    ));
    opts.train_list = Some("../meta.csv".into());
    assert!(matches!(
        Dataset::open(dir.path(), &opts),
        Err(DatasetError::InvalidArgument(_))
    ));
}

#[test]
fn byte_order_mark_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, tr, ev, te) = good_lists();
    m[0].insert(0, '\u{feff}');
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    assert_eq!(open(dir.path(), false).unwrap().clips.len(), 8);
}

/// Writes the good data set with one file modified by `edit`, opens it, and returns the error.
fn error_after(
    edit: impl FnOnce(&mut Vec<String>, &mut Vec<String>, &mut Vec<String>, &mut Vec<String>),
) -> (tempfile::TempDir, DatasetError, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, mut tr, mut ev, mut te) = good_lists();
    edit(&mut m, &mut tr, &mut ev, &mut te);
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    let err = open(dir.path(), false).expect_err("loading should fail");
    let ds = open(dir.path(), true).expect("skip_bad should load");
    assert_eq!(ds.report.skipped(), 1, "{:?}", ds.report.warnings);
    (dir, err, ds)
}

fn assert_at(err: &DatasetError, file: &str, line: usize) {
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{file}:{line}:")),
        "error should name {file}:{line}: {msg}"
    );
}

#[test]
fn unknown_label_in_fold_list() {
    let (_d, err, ds) = error_after(|_, tr, _, _| tr[2] = tr[2].replace("\tpark", "\tforest"));
    assert!(matches!(err, DatasetError::UnknownLabel { ref label, .. } if label == "forest"));
    assert_at(&err, "fold1_train.csv", 3);
    assert_eq!(ds.train.len(), 3);
}

#[test]
fn label_contradicting_meta() {
    let (_d, err, _) = error_after(|_, tr, _, _| tr[1] = tr[1].replace("\tpark", "\tbus"));
    assert!(matches!(err, DatasetError::LabelMismatch { .. }));
    assert_at(&err, "fold1_train.csv", 2);
}

#[test]
fn file_missing_from_meta() {
    let (_d, err, _) =
        error_after(|_, _, ev, _| ev.push("audio/tram-lyon-9-0-a.wav\tbus".to_string()));
    assert!(matches!(err, DatasetError::UnknownFile { .. }));
    assert_at(&err, "fold1_evaluate.csv", 6);
}

#[test]
fn missing_audio_file() {
    let dir = tempfile::tempdir().unwrap();
    let (m, tr, ev, te) = good_lists();
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    fs::remove_file(dir.path().join("audio/bus-lyon-1-1-s4.wav")).unwrap();
    let err = open(dir.path(), false).unwrap_err();
    assert!(matches!(err, DatasetError::MissingAudio { .. }), "{err}");
    assert_at(&err, "meta.csv", 9);
    assert!(err.to_string().contains("bus-lyon-1-1-s4.wav"));
    // Skipped once in meta.csv; the evaluate and test lists do not report it again.
    let ds = open(dir.path(), true).unwrap();
    assert_eq!(ds.report.skipped(), 1);
    assert_eq!((ds.evaluate.len(), ds.test.len()), (3, 3));
    // Without the existence check it loads.
    let opts = LoadOptions {
        check_audio: false,
        ..LoadOptions::default()
    };
    assert_eq!(Dataset::open(dir.path(), &opts).unwrap().clips.len(), 8);
}

#[test]
fn duplicate_in_meta_and_in_fold_list() {
    let (_d, err, ds) = error_after(|m, _, _, _| m.push(m[3].clone()));
    assert!(
        matches!(err, DatasetError::Duplicate { first_line: 4, .. }),
        "{err}"
    );
    assert_at(&err, "meta.csv", 10);
    assert_eq!(ds.clips.len(), 8);
    let (_d, err, _) = error_after(|_, tr, _, _| tr.push(tr[1].clone()));
    assert!(
        matches!(err, DatasetError::Duplicate { first_line: 2, .. }),
        "{err}"
    );
    assert_at(&err, "fold1_train.csv", 6);
}

#[test]
fn malformed_row() {
    let (_d, err, ds) = error_after(|m, _, _, _| m[4].push_str("\textra"));
    assert!(
        matches!(
            err,
            DatasetError::Malformed {
                expected: 4,
                found: 5,
                ..
            }
        ),
        "{err}"
    );
    assert_at(&err, "meta.csv", 5);
    // The skipped clip's fold entry is not reported twice.
    assert_eq!(ds.clips.len(), 7);
    let (_d, err, _) = error_after(|_, _, _, te| te[2].push_str("\textra"));
    assert!(matches!(
        err,
        DatasetError::Malformed {
            expected: 1,
            found: 2,
            ..
        }
    ));
    assert_at(&err, "fold1_test.csv", 3);
}

#[test]
fn path_escaping_the_root() {
    let (_d, err, _) =
        error_after(|m, _, _, _| m.push("../outside.wav\tbus\tlyon-0\ta".to_string()));
    assert!(matches!(err, DatasetError::PathEscapes { .. }), "{err}");
    assert_at(&err, "meta.csv", 10);
    let (_d, err, _) = error_after(|_, tr, _, _| tr.push("/etc/passwd\tbus".to_string()));
    assert!(matches!(err, DatasetError::PathEscapes { .. }), "{err}");
    assert_at(&err, "fold1_train.csv", 6);
}

#[test]
fn train_evaluate_overlap_is_a_leak() {
    let (_d, err, _) = error_after(|_, tr, ev, _| ev.push(tr[1].clone()));
    assert!(matches!(err, DatasetError::SplitOverlap { .. }), "{err}");
    assert_at(&err, "fold1_evaluate.csv", 6);
}

#[test]
fn empty_label_field() {
    let (_d, err, _) = error_after(|m, _, _, _| {
        m.push("audio/x-lyon-5-0-a.wav\t\tlyon-5\ta".to_string());
    });
    assert!(matches!(err, DatasetError::EmptyField { .. }), "{err}");
    assert_at(&err, "meta.csv", 10);
}

#[test]
fn bad_header_and_missing_lists_fail_even_with_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, tr, ev, te) = good_lists();
    m[0] = "file\tscene_label\tidentifier\tsource_label".into();
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    let err = open(dir.path(), true).unwrap_err();
    assert!(
        matches!(err, DatasetError::BadHeader { line: 1, .. }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (m, tr, ev, te) = good_lists();
    write_dataset(dir.path(), &m, &tr, &ev, &te);
    fs::remove_dir_all(dir.path().join("evaluation_setup")).unwrap();
    let err = open(dir.path(), true).unwrap_err();
    assert!(matches!(err, DatasetError::MissingFile { .. }), "{err}");
    let err = Dataset::open(dir.path().join("nope"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DatasetError::MissingFile { .. }), "{err}");
}

#[test]
fn unlabelled_evaluation_set() {
    let dir = tempfile::tempdir().unwrap();
    let meta = vec![
        "filename".to_string(),
        "audio/0.wav".to_string(),
        "audio/1.wav".to_string(),
    ];
    write_dataset(dir.path(), &meta, &[], &[], &meta);
    fs::remove_file(dir.path().join("evaluation_setup/fold1_train.csv")).unwrap();
    fs::remove_file(dir.path().join("evaluation_setup/fold1_evaluate.csv")).unwrap();
    let ds = open(dir.path(), false).unwrap();
    assert!(ds.labels.is_empty());
    assert_eq!(ds.test, [0, 1]);
    assert!(ds
        .clips
        .iter()
        .all(|c| c.label.is_none() && c.device.is_none()));
}

#[test]
fn plain_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (label, name) in [
        ("tram", "x/1.WAV"),
        ("bus", "a.wav"),
        ("bus", "b.wav"),
        ("bus", "notes.txt"),
    ] {
        let p = dir.path().join(label).join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"RIFF").unwrap();
    }
    fs::write(dir.path().join("stray.wav"), b"RIFF").unwrap();
    let ds = open(dir.path(), false).unwrap();
    assert_eq!(ds.layout, Layout::Plain);
    assert_eq!(ds.labels.names(), ["bus", "tram"]);
    let names: Vec<&str> = ds.clips.iter().map(|c| c.filename.as_str()).collect();
    assert_eq!(names, ["bus/a.wav", "bus/b.wav", "tram/x/1.WAV"]);
    assert_eq!(ds.train, [0, 1, 2]);
    assert_eq!(ds.clips[2].label, Some(1));

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        open(empty.path(), false),
        Err(DatasetError::Empty { .. })
    ));
}
