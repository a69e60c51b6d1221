//! Features of many audio files written as `.npy` files, one per input: what `asc features`
//! does. Computing and writing overlap: the spectrograms are computed in parallel over files
//! and handed to one writer thread, which writes each file (temporary file, rename: see
//! [`npy::write`]) while the next ones are computed, so at most a few spectrograms are held in
//! memory whatever the number of files.

use super::{file_features, npy, FeatureCache, LogMel, Spectrogram};
use crate::error::FileError;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// One input and the `.npy` file its features go to.
pub type Job = (PathBuf, PathBuf);

/// Computes the features of every job's input and writes them to its output (folders created as
/// needed). `on_file` is called on the writer thread once per job, in the order the files
/// finish (input order on one thread), with the written spectrogram or what went wrong with
/// that file; a failed file does not stop the others. Returns how many failed.
pub fn write_npy_all(
    jobs: &[Job],
    frontend: &LogMel,
    cache: Option<&FeatureCache>,
    mut on_file: impl FnMut(&Job, Result<&Spectrogram, &FileError>) + Send,
) -> usize {
    // A few spectrograms per compute thread in flight: enough to keep the writer busy while a
    // file is written, bounded so memory does not grow with the folder.
    let (tx, rx) = mpsc::sync_channel::<(usize, Result<Spectrogram, FileError>)>(
        4 * rayon::current_num_threads(),
    );
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut failed = 0;
            for (i, computed) in rx {
                let job = &jobs[i];
                match computed.and_then(|spec| write_one(&job.1, &spec).map(|_| spec)) {
                    Ok(spec) => on_file(job, Ok(&spec)),
                    Err(e) => {
                        failed += 1;
                        on_file(job, Err(&e));
                    }
                }
            }
            failed
        });
        jobs.par_iter()
            .enumerate()
            .for_each_with(tx, |tx, (i, (src, _))| {
                // The writer only hangs up by panicking, which the join below re-raises.
                let _ = tx.send((i, file_features(src, frontend, cache)));
            });
        writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn write_one(dst: &Path, spec: &Spectrogram) -> Result<(), FileError> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FileError::new(parent, e.to_string()))?;
    }
    npy::write(dst, spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FrontendConfig;

    fn wav(path: &Path, seconds: f32) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..(44_100.0 * seconds) as usize {
            w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }

    /// Every good file is written with the features `file_features` gives, a bad one is reported
    /// against its own job and does not stop the rest, and nothing else is written.
    #[test]
    fn writes_each_file_and_reports_each_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut jobs = Vec::new();
        for i in 0..7 {
            let src = dir.path().join(format!("{i}.wav"));
            if i == 3 {
                std::fs::write(&src, b"RIFF but not a wav").unwrap();
            } else {
                wav(&src, 0.2 + i as f32 * 0.1);
            }
            jobs.push((src, out.join(format!("sub/{i}.npy"))));
        }
        let frontend = LogMel::new(FrontendConfig::preset("dcase2020").unwrap()).unwrap();
        let mut seen = Vec::new();
        let failed = write_npy_all(&jobs, &frontend, None, |job, r| {
            seen.push((job.0.clone(), r.is_ok()));
        });
        assert_eq!(failed, 1);
        seen.sort();
        let expected: Vec<_> = jobs
            .iter()
            .map(|j| (j.0.clone(), !j.0.ends_with("3.wav")))
            .collect();
        assert_eq!(seen, expected);
        for (src, dst) in &jobs {
            if src.ends_with("3.wav") {
                assert!(!dst.exists());
                continue;
            }
            let want = file_features(src, &frontend, None).unwrap();
            let got = npy::read(dst).unwrap();
            assert_eq!((got.n_mels, got.frames), (want.n_mels, want.frames));
            assert_eq!(got.data, want.data);
        }
        assert_eq!(std::fs::read_dir(out.join("sub")).unwrap().count(), 6);
    }
}
