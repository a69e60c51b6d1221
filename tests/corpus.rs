//! The corpus of odd and broken WAV files (`tests/corpus/`, written by `scripts/gen_corpus.sh`)
//! through the `asc` binary, one process per file: valid files decode to what sox (or the file's
//! construction) says they hold, broken ones get one line naming the file and the reason, every
//! process ends by returning 0 or 1 (never a signal or a panic), and none needs much memory.
//!
//! Other subcommands that take WAV inputs run over the same corpus through [`run_over_corpus`].

mod child;

use child::Outcome;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Peak resident memory allowed to one `asc` process on a corpus file. The largest file is
/// 50 KB; a decoder that sized buffers from a header (the corpus has files claiming 1 GiB and
/// 4 GiB of data) would exceed it by far.
const MAX_PEAK_RSS_MIB: f64 = 300.0;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// What a corpus file must give.
#[derive(Debug, Clone)]
enum Expect {
    Ok {
        sample_rate: u32,
        channels: u16,
        frames: u64,
    },
    /// Refused with a reason containing these words.
    Error(String),
}

#[derive(Debug, Clone)]
struct Entry {
    file: String,
    expect: Expect,
}

impl Entry {
    fn path(&self) -> PathBuf {
        corpus_dir().join(&self.file)
    }
}

/// `manifest.tsv`: file, expect (ok|error), reason words, sample_rate, channels, frames.
fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(corpus_dir().join("manifest.tsv")).expect("manifest");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6, "manifest line {line:?}");
            let expect = match f[1] {
                "ok" => Expect::Ok {
                    sample_rate: f[3].parse().expect("rate"),
                    channels: f[4].parse().expect("channels"),
                    frames: f[5].parse().expect("frames"),
                },
                "error" => Expect::Error(f[2].to_string()),
                other => panic!("manifest: unknown expectation {other:?}"),
            };
            Entry {
                file: f[0].to_string(),
                expect,
            }
        })
        .collect()
}

/// Runs `asc ARGS... FILE` for every corpus file, checking what holds for every subcommand:
/// the process returns 0 for a valid file and 1 for a broken one, and stays under
/// [`MAX_PEAK_RSS_MIB`]. Returns the outcomes for the subcommand's own checks.
fn run_over_corpus(args: &[&str]) -> Vec<(Entry, Outcome)> {
    manifest()
        .into_iter()
        .map(|entry| {
            let outcome = child::run(child::asc().args(args).arg(entry.path()));
            let want = match entry.expect {
                Expect::Ok { .. } => 0,
                Expect::Error(_) => 1,
            };
            assert_eq!(
                outcome.code,
                Some(want),
                "asc {} {}: {}",
                args.join(" "),
                entry.file,
                outcome.describe()
            );
            assert!(
                outcome.peak_rss_mib < MAX_PEAK_RSS_MIB,
                "asc {} {}: {}",
                args.join(" "),
                entry.file,
                outcome.describe()
            );
            (entry, outcome)
        })
        .collect()
}

#[test]
fn manifest_lists_exactly_the_corpus_files() {
    let listed: BTreeSet<String> = manifest().into_iter().map(|e| e.file).collect();
    let present: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.tsv")
        .collect();
    assert_eq!(listed, present);
    let (ok, bad): (Vec<_>, Vec<_>) = manifest()
        .into_iter()
        .partition(|e| matches!(e.expect, Expect::Ok { .. }));
    assert!(
        ok.len() >= 50 && bad.len() >= 50,
        "{} ok, {} bad",
        ok.len(),
        bad.len()
    );
}

#[test]
fn info_decodes_valid_files_and_names_the_reason_for_broken_ones() {
    let outcomes = run_over_corpus(&["info"]);
    let mut peak: f64 = 0.0;
    for (entry, out) in &outcomes {
        peak = peak.max(out.peak_rss_mib);
        let path = entry.path().display().to_string();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{}: {}", entry.file, out.describe());
        assert!(out.stderr.is_empty(), "{}: {}", entry.file, out.describe());
        match &entry.expect {
            Expect::Ok { .. } => {
                assert!(lines[0].starts_with(&format!("{path}: ")), "{}", lines[0]);
                assert!(!lines[0].contains("error"), "{}", lines[0]);
            }
            Expect::Error(words) => {
                let want = format!("{path}: error: ");
                assert!(lines[0].starts_with(&want), "{}", lines[0]);
                assert!(
                    lines[0].contains(words.as_str()),
                    "{}: '{}' does not say '{words}'",
                    entry.file,
                    lines[0]
                );
            }
        }
    }
    eprintln!(
        "{} corpus files, peak RSS of the largest asc info run {peak:.1} MiB",
        outcomes.len()
    );
}

#[test]
fn info_json_reports_what_sox_wrote() {
    for (entry, out) in run_over_corpus(&["info", "--json"]) {
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{}: {e}: {}", entry.file, out.stdout));
        match entry.expect {
            Expect::Ok {
                sample_rate,
                channels,
                frames,
            } => {
                let got = (
                    v["sample_rate"].as_u64(),
                    v["channels"].as_u64(),
                    v["frames"].as_u64(),
                );
                let want = (
                    Some(sample_rate as u64),
                    Some(channels as u64),
                    Some(frames),
                );
                assert_eq!(got, want, "{}: {}", entry.file, out.stdout);
            }
            Expect::Error(words) => {
                let reason = v["error"].as_str().unwrap_or_default();
                assert!(reason.contains(&words), "{}: {reason}", entry.file);
            }
        }
    }
}

/// One run over the whole folder: every file is reported once, the bad ones do not stop the
/// batch, and the exit status says some failed.
#[test]
fn info_over_the_folder_reports_every_file_and_exits_1() {
    let out = child::run(child::asc().arg("info").arg(corpus_dir()));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let entries = manifest();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), entries.len(), "{}", out.stdout);
    for e in &entries {
        let named = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{}: ", e.path().display())))
            .count();
        assert_eq!(named, 1, "{} reported {named} times", e.file);
    }
    let errors = lines.iter().filter(|l| l.contains(": error: ")).count();
    let bad = entries
        .iter()
        .filter(|e| matches!(e.expect, Expect::Error(_)))
        .count();
    assert_eq!(errors, bad);
    assert!(out.peak_rss_mib < MAX_PEAK_RSS_MIB, "{}", out.describe());
}

/// The front end over every file: valid files give features, broken ones the same reason as
/// `asc info`, and nothing else fails.
#[test]
fn features_over_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap().to_string();
    for (entry, out) in run_over_corpus(&["features", "--preset", "cpjku", "--out", &out_dir]) {
        match &entry.expect {
            Expect::Ok { .. } => {
                let npy = dir.path().join(&entry.file).with_extension("npy");
                let spec = asc::features::npy::read(&npy).expect("features written");
                assert!(
                    spec.data.iter().all(|v| v.is_finite()),
                    "{}: non-finite features",
                    entry.file
                );
            }
            Expect::Error(words) => {
                let want = format!("error: {}: ", entry.path().display());
                assert!(
                    out.stderr.contains(&want) && out.stderr.contains(words.as_str()),
                    "{}: {}",
                    entry.file,
                    out.stderr
                );
            }
        }
    }
}

/// `asc classify` with the shipped model over every file: valid files with samples get a label,
/// an empty recording is refused as such, broken files give the decoder's reason; every process
/// ends normally and stays small.
#[test]
fn classify_over_the_corpus() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/quickstart-cnn.onnx");
    for entry in manifest() {
        let out = child::run(
            child::asc()
                .args(["classify", "--format", "csv", "--model"])
                .arg(&model)
                .arg(entry.path()),
        );
        assert!(
            out.peak_rss_mib < MAX_PEAK_RSS_MIB,
            "{}: {}",
            entry.file,
            out.describe()
        );
        match &entry.expect {
            Expect::Ok { frames, .. } if *frames > 0 => {
                assert_eq!(out.code, Some(0), "{}: {}", entry.file, out.describe());
                assert_eq!(
                    out.stdout.lines().count(),
                    2,
                    "{}: {}",
                    entry.file,
                    out.stdout
                );
            }
            Expect::Ok { .. } => {
                assert_eq!(out.code, Some(1), "{}: {}", entry.file, out.describe());
                assert!(
                    out.stderr.contains("no samples"),
                    "{}: {}",
                    entry.file,
                    out.stderr
                );
            }
            Expect::Error(words) => {
                assert_eq!(out.code, Some(1), "{}: {}", entry.file, out.describe());
                assert!(
                    out.stderr.contains(&entry.file) && out.stderr.contains(words.as_str()),
                    "{}: {}",
                    entry.file,
                    out.stderr
                );
            }
        }
    }
}
