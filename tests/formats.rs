//! Containers and codecs other than PCM WAV (issue 18): each file in tests/fixtures/formats/
//! decodes to the samples an independent decoder gives (written by
//! tests/fixtures/gen_formats.sh), and `asc` accepts them wherever it accepts a WAV.

mod child;

use asc::audio::{self, Container, SampleFormat};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(name)
}

fn decode(name: &str) -> audio::Decoded {
    audio::decode_file(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Largest |ours − reference| over the samples, after checking the layouts agree.
fn max_diff(ours: &audio::Decoded, reference: &audio::Decoded) -> f32 {
    let (a, b) = (&ours.info, &reference.info);
    assert_eq!(
        (a.sample_rate, a.channels, a.frames),
        (b.sample_rate, b.channels, b.frames)
    );
    ours.samples
        .iter()
        .zip(&reference.samples)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lossless_containers_give_the_pcm_they_were_encoded_from() {
    for (file, source, container, bits) in [
        ("s16_stereo.flac", "s16_stereo.wav", Container::Flac, 16),
        ("s24_mono.flac", "s24_mono.wav", Container::Flac, 24),
        ("s16_stereo.aiff", "s16_stereo.wav", Container::Aiff, 16),
        ("s24_mono.aiff", "s24_mono.wav", Container::Aiff, 24),
        ("s16_stereo.aifc", "s16_stereo.wav", Container::Aiff, 16),
        ("s16_stereo.caf", "s16_stereo.wav", Container::Caf, 16),
    ] {
        let (ours, want) = (decode(file), decode(source));
        assert_eq!(ours.info.container, container, "{file}");
        assert_eq!(ours.info.format, SampleFormat::Int, "{file}");
        assert_eq!(ours.info.bits_per_sample, bits, "{file}");
        assert_eq!(max_diff(&ours, &want), 0.0, "{file} differs from {source}");
    }
}

#[test]
fn lossy_codecs_match_an_independent_decoder() {
    // Bounds. Vorbis: sox reads Ogg through libvorbisfile's 16-bit output, so the reference
    // is rounded to 16 bits: half a step (1.5e-5) apart when written; one step (2⁻¹⁵) allowed.
    // MP3: decoders differ in their synthesis filter's float arithmetic; 6.3e-7 from ffmpeg's
    // when written.
    for (file, reference, container, bound) in [
        (
            "vorbis_stereo.ogg",
            "vorbis_stereo_ref.wav",
            Container::Ogg,
            1.0 / 32768.0,
        ),
        ("mp3_stereo.mp3", "mp3_stereo_ref.wav", Container::Mp3, 1e-5),
    ] {
        let (ours, want) = (decode(file), decode(reference));
        assert_eq!(ours.info.container, container, "{file}");
        assert_eq!(ours.info.format, SampleFormat::Lossy, "{file}");
        let diff = max_diff(&ours, &want);
        eprintln!("{file}: largest difference from {reference} {diff:e}");
        assert!(diff <= bound, "{file}: {diff} from {reference}");
    }
}

#[test]
fn g711_wav_matches_sox() {
    for (file, reference, format) in [
        ("alaw.wav", "alaw_ref.wav", SampleFormat::ALaw),
        ("mulaw.wav", "mulaw_ref.wav", SampleFormat::MuLaw),
        ("alaw_codes.wav", "alaw_codes_ref.wav", SampleFormat::ALaw),
        (
            "mulaw_codes.wav",
            "mulaw_codes_ref.wav",
            SampleFormat::MuLaw,
        ),
    ] {
        let (ours, want) = (decode(file), decode(reference));
        assert_eq!(ours.info.format, format, "{file}");
        if file.contains("codes") {
            // The file holds each code once, so the table is checked entry by entry.
            let mut codes = ours.samples.clone();
            codes.sort_by(f32::total_cmp);
            codes.dedup();
            assert!(
                codes.len() >= 255,
                "{file}: {} distinct values",
                codes.len()
            );
        }
        assert_eq!(max_diff(&ours, &want), 0.0, "{file}");
    }
}

#[test]
fn wav_from_a_pipe_reads_to_the_end_of_the_file() {
    let want = decode("s16_stereo.wav");
    for file in ["stream_ffmpeg.wav", "stream_sox.wav"] {
        assert_eq!(max_diff(&decode(file), &want), 0.0, "{file}");
    }
}

#[test]
fn the_bytes_decide_not_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let disguised = dir.path().join("really_flac.wav");
    std::fs::copy(fixture("s16_stereo.flac"), &disguised).unwrap();
    let d = audio::decode_file(&disguised).unwrap();
    assert_eq!(d.info.container, Container::Flac);
}

/// A decompression bomb (here: any file, with the cap set below its length) is refused with a
/// reason, not decoded into memory without end.
#[test]
fn decoded_length_is_capped() {
    let bytes = std::fs::read(fixture("s16_stereo.flac")).unwrap();
    let e = audio::decode_bytes_within(Path::new("bomb.flac"), &bytes, 1000).unwrap_err();
    assert!(e.reason.contains("more than 1000 samples"), "{e}");
}

/// `asc features` and `asc info` take the new formats in folders, as they take WAV files.
#[test]
fn features_over_a_folder_of_mixed_formats() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "s16_stereo.flac",
        "vorbis_stereo.ogg",
        "mp3_stereo.mp3",
        "s16_stereo.aiff",
        "s16_stereo.caf",
        "alaw.wav",
    ] {
        // Distinct stems: features are named by stem, so s16_stereo.aiff and .caf would collide.
        let ext = f.rsplit('.').next().unwrap();
        std::fs::copy(fixture(f), dir.path().join(format!("{ext}_{f}"))).unwrap();
    }
    let out = dir.path().join("features");
    let run = child::run(
        child::asc()
            .args(["features", "--preset", "cpjku", "--out"])
            .arg(&out)
            .arg(dir.path()),
    );
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let written = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "npy")
        })
        .count();
    assert_eq!(written, 6, "{}", run.describe());
}

/// A DCASE list that names `.flac`, `.ogg` and `.mp3` files trains and evaluates like one of
/// WAVs: the synthetic set with some clips swapped for the compressed fixtures (their labels are
/// noise to the model; what is checked is that every path of the data set accepts them).
#[test]
fn dcase_lists_naming_compressed_files_train_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let config = child::tiny_training_set(dir.path(), 1);
    let data = dir.path().join("data");
    let meta = std::fs::read_to_string(data.join("meta.csv")).unwrap();
    let wavs: Vec<String> = meta
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let swaps = [
        "s16_stereo.flac",
        "vorbis_stereo.ogg",
        "mp3_stereo.mp3",
        "s24_mono.aiff",
    ];
    // Every 7th clip, so the train, evaluate and test lists all get some.
    let mut renamed = Vec::new();
    for (i, wav) in wavs.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
        let fixture_name = swaps[i / 7 % swaps.len()];
        let ext = fixture_name.rsplit('.').next().unwrap();
        let new = format!("{}.{ext}", wav.trim_end_matches(".wav"));
        std::fs::remove_file(data.join(wav)).unwrap();
        std::fs::copy(fixture(fixture_name), data.join(&new)).unwrap();
        renamed.push((wav.clone(), new));
    }
    for list in [
        "meta.csv",
        "evaluation_setup/fold1_train.csv",
        "evaluation_setup/fold1_evaluate.csv",
        "evaluation_setup/fold1_test.csv",
    ] {
        let path = data.join(list);
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (old, new) in &renamed {
            text = text.replace(old.as_str(), new);
        }
        std::fs::write(&path, text).unwrap();
    }
    let run = dir.path().join("run");
    let out = child::run(
        child::asc()
            .args(["train", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&run),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(!out.stderr.contains("skipp"), "{}", out.describe());
    let eval = child::run(child::asc().args(["evaluate", "--run"]).arg(&run));
    assert_eq!(eval.code, Some(0), "{}", eval.describe());
    let split = std::fs::read_to_string(run.join("split.json")).unwrap();
    for ext in ["flac", "ogg", "mp3", "aiff"] {
        assert!(
            split.contains(&format!(".{ext}\"")),
            "no .{ext} in split.json"
        );
    }
}
