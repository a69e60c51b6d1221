//! WAV decoding: every supported encoding, the valid files `hound` alone mishandles, and the
//! malformed ones that must be refused with a reason. Expected samples are known by
//! construction: each file is built byte by byte from the values it must decode to.

use asc::audio::{self, SampleFormat};
use std::path::Path;

/// A `fmt ` chunk: format tag, channels, rate, container bits.
fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    chunk(b"fmt ", &fmt_body(tag, channels, rate, bits))
}

/// A `fmt ` body (byte rate and block align derived).
fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = channels * bits / 8;
    let mut b = Vec::new();
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.wrapping_mul(align as u32).to_le_bytes());
    b.extend_from_slice(&align.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b
}

/// WAVE_FORMAT_EXTENSIBLE body with the given sub-format tag.
fn fmt_ext(sub: u16, channels: u16, rate: u32, bits: u16, valid: u16) -> Vec<u8> {
    let mut b = fmt_body(0xFFFE, channels, rate, bits);
    b.extend_from_slice(&22u16.to_le_bytes());
    b.extend_from_slice(&valid.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&sub.to_le_bytes());
    b.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ]);
    chunk(b"fmt ", &b)
}

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = id.to_vec();
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(body);
    if body.len() % 2 == 1 {
        b.push(0);
    }
    b
}

fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut b = b"RIFF".to_vec();
    b.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVE");
    b.extend_from_slice(&body);
    b
}

fn decode(name: &str, bytes: &[u8]) -> Result<audio::Decoded, asc::FileError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    audio::decode_file(&path)
}

fn assert_samples(d: &audio::Decoded, want: &[f32]) {
    assert_eq!(d.samples.len(), want.len());
    for (a, b) in d.samples.iter().zip(want) {
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
    }
}

#[test]
fn pcm_8_bit_is_unsigned() {
    let d = decode(
        "u8.wav",
        &riff(&[fmt(1, 1, 8000, 8), chunk(b"data", &[0, 128, 255, 64])]),
    )
    .unwrap();
    assert_eq!(d.info.bits_per_sample, 8);
    assert_samples(&d, &[-1.0, 0.0, 127.0 / 128.0, -0.5]);
}

#[test]
fn pcm_16_24_32_bit() {
    let v16: [i16; 3] = [-32768, 0, 16384];
    let data: Vec<u8> = v16.iter().flat_map(|v| v.to_le_bytes()).collect();
    let d = decode(
        "s16.wav",
        &riff(&[fmt(1, 1, 16000, 16), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_samples(&d, &[-1.0, 0.0, 0.5]);

    let v24: [i32; 3] = [-(1 << 23), (1 << 22), 1];
    let data: Vec<u8> = v24
        .iter()
        .flat_map(|v| v.to_le_bytes()[..3].to_vec())
        .collect();
    let d = decode(
        "s24.wav",
        &riff(&[fmt(1, 1, 44100, 24), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_samples(&d, &[-1.0, 0.5, 1.0 / (1 << 23) as f32]);

    let v32: [i32; 2] = [i32::MIN, 1 << 29];
    let data: Vec<u8> = v32.iter().flat_map(|v| v.to_le_bytes()).collect();
    let d = decode(
        "s32.wav",
        &riff(&[fmt(1, 1, 48000, 32), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_samples(&d, &[-1.0, 0.25]);
}

#[test]
fn float_32_and_64_bit() {
    let data: Vec<u8> = [0.25f32, -0.75]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let d = decode(
        "f32.wav",
        &riff(&[fmt(3, 1, 22050, 32), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_eq!(d.info.format, SampleFormat::Float);
    assert_samples(&d, &[0.25, -0.75]);
    // hound refuses 64-bit float; we read it directly.
    let data: Vec<u8> = [0.125f64, -1.0, 0.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let d = decode(
        "f64.wav",
        &riff(&[fmt(3, 1, 96000, 64), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_samples(&d, &[0.125, -1.0, 0.5]);
}

#[test]
fn extensible_headers_and_channels() {
    // 24-bit stereo, WAVE_FORMAT_EXTENSIBLE with the PCM sub-format.
    let frames: [[i32; 2]; 2] = [[1 << 22, -(1 << 22)], [0, 1 << 21]];
    let data: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes()[..3].to_vec())
        .collect();
    let d = decode(
        "ext24.wav",
        &riff(&[fmt_ext(1, 2, 48000, 24, 24), chunk(b"data", &data)]),
    )
    .unwrap();
    assert!(d.info.extensible);
    assert_eq!((d.info.channels, d.info.frames), (2, 2));
    assert_samples(&d, &[0.5, -0.5, 0.0, 0.25]);
    assert_eq!(audio::downmix(&d.samples, 2), vec![0.0, 0.125]);
    // Float extensible, 6 channels.
    let data: Vec<u8> = (0..12)
        .flat_map(|i| (i as f32 / 16.0).to_le_bytes())
        .collect();
    let d = decode(
        "ext_f32_6ch.wav",
        &riff(&[fmt_ext(3, 6, 8000, 32, 32), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_eq!((d.info.channels, d.info.frames), (6, 2));
}

/// WAVE_FORMAT_EXTENSIBLE with fewer valid bits than the container: samples are left-justified
/// (the low padding bits are zero), so a 24-bit value v in a 32-bit word is v << 8.
#[test]
fn narrow_samples_in_wide_containers() {
    let v24: [i32; 4] = [-(1 << 23), 1 << 22, -1, (1 << 23) - 1];
    let want24: Vec<f32> = v24.iter().map(|&v| v as f32 / (1 << 23) as f32).collect();
    let data: Vec<u8> = v24.iter().flat_map(|v| (v << 8).to_le_bytes()).collect();
    let d = decode(
        "ext24in32.wav",
        &riff(&[fmt_ext(1, 2, 48000, 32, 24), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_eq!((d.info.bits_per_sample, d.info.container_bytes), (24, 4));
    assert_samples(&d, &want24);
    // 12 bits in 16 and 20 bits in 24, which hound refused as unsupported.
    let v12: [i16; 3] = [-2048, 1024, 2047];
    let data: Vec<u8> = v12.iter().flat_map(|v| (v << 4).to_le_bytes()).collect();
    let d = decode(
        "ext12in16.wav",
        &riff(&[fmt_ext(1, 1, 16000, 16, 12), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_samples(&d, &[-1.0, 0.5, 2047.0 / 2048.0]);
    let v20: [i32; 2] = [-(1 << 19), 3 << 17];
    let data: Vec<u8> = v20
        .iter()
        .flat_map(|v| (v << 4).to_le_bytes()[..3].to_vec())
        .collect();
    let d = decode(
        "ext20in24.wav",
        &riff(&[fmt_ext(1, 1, 96000, 24, 20), chunk(b"data", &data)]),
    )
    .unwrap();
    assert_samples(&d, &[-1.0, 0.75]);
}

#[test]
fn float_samples_that_are_not_audio_are_refused() {
    let f32_file = |values: &[f32]| {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        riff(&[fmt(3, 2, 16000, 32), chunk(b"data", &data)])
    };
    for (name, values, words) in [
        (
            "nan.wav",
            vec![0.0, 0.5, f32::NAN, 0.0],
            "sample 2 (frame 1, channel 0) is NaN",
        ),
        (
            "inf.wav",
            vec![f32::INFINITY, 0.0],
            "sample 0 (frame 0, channel 0) is inf",
        ),
        ("ninf.wav", vec![0.0, f32::NEG_INFINITY], "is -inf"),
        ("huge.wav", vec![0.0, 1e20], "is 1e20, beyond ±1000"),
        ("limit.wav", vec![1000.5, 0.0], "beyond"),
    ] {
        let err = decode(name, &f32_file(&values))
            .expect_err(name)
            .to_string();
        assert!(err.contains(name) && err.contains(words), "{name}: {err}");
    }
    // Loud but plausible float audio (+60 dB at most) is kept as stored.
    let d = decode("loud.wav", &f32_file(&[-1000.0, 8.0])).unwrap();
    assert_samples(&d, &[-1000.0, 8.0]);
    let data: Vec<u8> = [0.5f64, 1e300]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let err = decode(
        "f64huge.wav",
        &riff(&[fmt(3, 1, 16000, 64), chunk(b"data", &data)]),
    )
    .unwrap_err();
    assert!(
        err.reason
            .contains("sample 1 (frame 1, channel 0) is 1e300"),
        "{err}"
    );
}

#[test]
fn sample_rates_from_1_khz_to_768_khz() {
    let data = [0u8; 4];
    for rate in [
        audio::MIN_SAMPLE_RATE,
        8000,
        192_000,
        audio::MAX_SAMPLE_RATE,
    ] {
        let d = decode(
            "ok.wav",
            &riff(&[fmt(1, 1, rate, 16), chunk(b"data", &data)]),
        )
        .unwrap();
        assert_eq!(d.info.sample_rate, rate);
    }
    assert_eq!(
        (audio::MIN_SAMPLE_RATE, audio::MAX_SAMPLE_RATE),
        (1000, 768_000)
    );
    for rate in [1, 999, 768_001, u32::MAX] {
        let err = decode(
            "rate.wav",
            &riff(&[fmt(1, 1, rate, 16), chunk(b"data", &data)]),
        )
        .expect_err("rate out of range");
        assert!(
            err.reason.contains(&format!(
                "sample rate {rate} Hz; accepted rates are 1000 to 768000 Hz"
            )),
            "{err}"
        );
    }
}

#[test]
fn chunks_hound_mishandles_still_decode() {
    let data: Vec<u8> = [100i16, -100]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let want = [100.0 / 32768.0, -100.0 / 32768.0];
    // An odd-sized LIST chunk (with its pad byte) before fmt, and a chunk after data.
    let bytes = riff(&[
        chunk(b"LIST", b"INFOabc"),
        fmt(1, 1, 44100, 16),
        chunk(b"data", &data),
        chunk(b"cue ", &[1, 2, 3]),
    ]);
    assert_samples(&decode("odd_chunks.wav", &bytes).unwrap(), &want);
    // An odd-sized chunk between fmt and data.
    let bytes = riff(&[
        fmt(1, 1, 44100, 16),
        chunk(b"junk", &[7]),
        chunk(b"data", &data),
    ]);
    assert_samples(&decode("pad_byte.wav", &bytes).unwrap(), &want);
    // Zero samples.
    let d = decode(
        "empty_data.wav",
        &riff(&[fmt(1, 2, 44100, 16), chunk(b"data", &[])]),
    )
    .unwrap();
    assert_eq!((d.info.frames, d.samples.len()), (0, 0));
    // A partial last frame is dropped, not an error.
    let d = decode(
        "partial.wav",
        &riff(&[fmt(1, 2, 44100, 16), chunk(b"data", &[0, 0, 0, 0, 9])]),
    )
    .unwrap();
    assert_eq!(d.info.frames, 1);
}

/// Each malformed file: (name, bytes, words the reason must contain).
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let data = vec![0u8; 8];
    let ok_fmt = fmt(1, 1, 44100, 16);
    let mut truncated = riff(&[ok_fmt.clone(), chunk(b"data", &vec![0u8; 1000])]);
    truncated.truncate(500);
    let mut huge = riff(&[ok_fmt.clone(), chunk(b"data", &data)]);
    let at = huge.len() - 12;
    huge[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let mut bad_align = fmt_body(1, 2, 44100, 16);
    bad_align[12] = 3;
    let bad_align = chunk(b"fmt ", &bad_align);
    vec![
        ("empty.wav", vec![], "empty file"),
        ("short.wav", b"RIFF\x04".to_vec(), "too short"),
        (
            "text.wav",
            b"this is not audio at all, just text".to_vec(),
            "not an audio file this tool reads",
        ),
        (
            "avi.wav",
            [b"RIFF".to_vec(), vec![4, 0, 0, 0], b"AVI ".to_vec()].concat(),
            "not 'WAVE'",
        ),
        (
            "rate0.wav",
            riff(&[fmt(1, 1, 0, 16), chunk(b"data", &data)]),
            "sample rate 0",
        ),
        (
            "nodata.wav",
            riff(&[ok_fmt.clone(), chunk(b"LIST", b"INFO")]),
            "no 'data' chunk",
        ),
        (
            "nofmt.wav",
            riff(&[chunk(b"data", &data)]),
            "no 'fmt ' chunk",
        ),
        ("truncated.wav", truncated, "truncated"),
        ("huge.wav", huge, "claims 4294967280 bytes"),
        (
            "align.wav",
            riff(&[bad_align, chunk(b"data", &data)]),
            "block alignment",
        ),
        (
            "chan0.wav",
            riff(&[fmt(1, 0, 44100, 16), chunk(b"data", &data)]),
            "0 channels",
        ),
        (
            "adpcm.wav",
            riff(&[fmt(2, 1, 8000, 4), chunk(b"data", &data)]),
            "ADPCM",
        ),
        (
            "alaw16.wav",
            riff(&[fmt(6, 1, 8000, 16), chunk(b"data", &data)]),
            "16-bit A-law",
        ),
        (
            "pcm12.wav",
            riff(&[fmt(1, 1, 8000, 12), chunk(b"data", &data)]),
            "sample width",
        ),
        (
            "float16.wav",
            riff(&[fmt(3, 1, 8000, 16), chunk(b"data", &data)]),
            "sample width",
        ),
        (
            "shortfmt.wav",
            riff(&[chunk(b"fmt ", &[1, 0, 1, 0]), chunk(b"data", &data)]),
            "at least 16",
        ),
        (
            "rifx.wav",
            [b"RIFX".to_vec(), vec![0; 4], b"WAVE".to_vec()].concat(),
            "RIFX",
        ),
    ]
}

#[test]
fn malformed_files_get_a_reason_naming_the_file() {
    for (name, bytes, words) in malformed() {
        let err = decode(name, &bytes).expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(name),
            "{name}: '{text}' does not name the file"
        );
        assert!(
            text.contains(words),
            "{name}: '{text}' does not say '{words}'"
        );
        // A one-line message.
        assert!(!text.contains('\n'), "{name}: multi-line message");
    }
}

#[test]
fn missing_and_folder_paths_are_errors() {
    assert!(audio::decode_file(Path::new("/no/such/file.wav")).is_err());
    let dir = tempfile::tempdir().unwrap();
    let err = audio::decode_file(dir.path()).unwrap_err();
    assert!(err.reason.contains("folder"));
}
