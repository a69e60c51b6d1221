//! Containers and codecs other than WAV (FLAC, Ogg Vorbis, MP3, AIFF/AIFC, CAF), decoded with
//! `symphonia` (pure Rust, MPL-2.0, no unsafe code in its crates).
//!
//! The same rules as our WAV reader: the whole stream is decoded or the file is refused with a
//! reason (a corrupt or truncated packet is not skipped silently), nothing is allocated from a
//! header's claims (samples are appended as packets decode), and a cap on the decoded length
//! stops decompression bombs, files of a few kilobytes that expand to gigabytes.

use super::riff::{SampleFormat, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use super::sniff::Container;
use super::{AudioInfo, Decoded};
use std::io::Cursor;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_MP3, CODEC_ID_VORBIS};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// At most this many samples (all channels) come out of one compressed file: 2³⁰, 4 GiB of
/// `f32`, what the largest WAV file holds. Longer recordings are cut into clips first.
pub const MAX_DECODED_SAMPLES: usize = 1 << 30;

/// Decodes `bytes`, a file of `container` (not WAV), into interleaved samples, refusing it once
/// more than `max_samples` samples come out. Reasons start with the container's name.
pub(super) fn decode(
    bytes: &[u8],
    container: Container,
    max_samples: usize,
) -> Result<Decoded, String> {
    // symphonia has fixed panics on malformed input as fuzzers found them (its issues #57, #200,
    // #299, #439, #488); one it has not found yet must still end as an error naming the file,
    // not abort a batch. Everything the closure touches is built inside it, so nothing is seen
    // half-updated after an unwind. (Under the fuzzer a panic aborts, so fuzzing still sees it.)
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_stream(bytes, container, max_samples)
    }));
    let name = container.name();
    match outcome {
        Ok(result) => result.map_err(|reason| format!("{name}: {reason}")),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("{name}: the decoder failed on this file ({what})"))
        }
    }
}

fn decode_stream(
    bytes: &[u8],
    container: Container,
    max_samples: usize,
) -> Result<Decoded, String> {
    let source = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(what) => {
                format!(
                    "no readable stream found: truncated, or not really {} ({what})",
                    container.name()
                )
            }
            e => reason("reading the container", e),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| "no audio track".to_string())?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
        return Err("no audio track".into());
    };
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| reason("opening the decoder", e))?;
    let lossy = params.codec == CODEC_ID_VORBIS || params.codec == CODEC_ID_MP3;
    let mut samples: Vec<f32> = Vec::new();
    let mut packet_samples: Vec<f32> = Vec::new();
    let mut spec: Option<(u32, usize)> = None;
    while let Some(packet) = next_packet(format.as_mut())? {
        if packet.track_id != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(|e| {
            let at = spec.map_or(0, |(_, ch)| samples.len() / ch.max(1));
            reason(&format!("decoding the packet at frame {at}"), e)
        })?;
        let this = (decoded.spec().rate(), decoded.spec().channels().count());
        match spec {
            None => spec = Some(this),
            Some(first) if first != this => {
                return Err(format!(
                    "the stream changes from {} Hz, {} channel(s) to {} Hz, {} channel(s)",
                    first.0, first.1, this.0, this.1
                ))
            }
            Some(_) => {}
        }
        decoded.copy_to_vec_interleaved(&mut packet_samples);
        if samples.len() + packet_samples.len() > max_samples {
            return Err(format!(
                "decodes to more than {max_samples} samples; cut long recordings into clips"
            ));
        }
        samples.extend_from_slice(&packet_samples);
    }
    let (sample_rate, channels) = spec.unwrap_or((
        params.sample_rate.unwrap_or(0),
        params.channels.as_ref().map_or(0, |c| c.count()),
    ));
    check_stream(sample_rate, channels)?;
    let frames = (samples.len() / channels) as u64;
    if let Some(declared) = declared_frames.filter(|&n| n > frames) {
        return Err(format!(
            "truncated: {frames} of the {declared} frames the header declares are present"
        ));
    }
    // Float PCM in AIFF-C and CAF can hold any value, as in a float WAV (a lossy decoder's
    // output is bounded by construction, but is checked alike).
    for (i, &v) in samples.iter().enumerate() {
        if let Some(reason) = super::decode::not_audio(i, channels, v as f64, &format!("{v:e}")) {
            return Err(reason);
        }
    }
    let bits = params.bits_per_sample.unwrap_or(0).min(64) as u16;
    let info = AudioInfo {
        container,
        sample_rate,
        channels: channels as u16,
        format: if lossy {
            SampleFormat::Lossy
        } else if matches!(
            params.sample_format,
            Some(symphonia::core::audio::sample::SampleFormat::F32)
                | Some(symphonia::core::audio::sample::SampleFormat::F64)
        ) {
            SampleFormat::Float
        } else {
            SampleFormat::Int
        },
        bits_per_sample: if lossy { 0 } else { bits },
        container_bytes: if lossy { 4 } else { bits.div_ceil(8) },
        extensible: false,
        frames,
    };
    Ok(Decoded { info, samples })
}

/// The next packet; the end of the stream is `None`, anything else that stops reading (a
/// truncated or corrupt file) is an error.
fn next_packet(
    format: &mut dyn FormatReader,
) -> Result<Option<symphonia::core::packet::Packet>, String> {
    format
        .next_packet()
        .map_err(|e| reason("reading the next packet", e))
}

fn check_stream(sample_rate: u32, channels: usize) -> Result<(), String> {
    if channels == 0 || channels > MAX_CHANNELS as usize {
        return Err(format!(
            "stream has {channels} channels (1 to {MAX_CHANNELS} are accepted)"
        ));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(format!(
            "stream says sample rate {sample_rate} Hz; accepted rates are \
             {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"
        ));
    }
    Ok(())
}

/// A symphonia error in words, with what we were doing.
fn reason(doing: &str, e: SymError) -> String {
    match e {
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated or corrupt: the data ends while {doing}")
        }
        SymError::IoError(io) => format!("{doing}: {io}"),
        SymError::DecodeError(what) => format!("corrupt data while {doing}: {what}"),
        SymError::Unsupported(what) => format!("unsupported: {what}"),
        SymError::LimitError(what) => format!("a decoder limit was reached while {doing}: {what}"),
        other => format!("{doing}: {other}"),
    }
}
