//! Which container a file is, from its first bytes (never from its name: a `.wav` that is
//! really FLAC, or a download without an extension, decodes by what it holds).

/// The containers `asc` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// RIFF/WAVE, walked by our own chunk reader ([`super::riff`]).
    Wav,
    /// Native FLAC (`fLaC`).
    Flac,
    /// Ogg (Vorbis inside).
    Ogg,
    /// MPEG audio layer III, with or without an ID3v2 tag in front.
    Mp3,
    /// AIFF and AIFF-C (`FORM` … `AIFF`/`AIFC`).
    Aiff,
    /// Core Audio Format (`caff`).
    Caf,
}

impl Container {
    /// The name `asc info` prints.
    pub fn name(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Mp3 => "MP3",
            Container::Aiff => "AIFF",
            Container::Caf => "CAF",
        }
    }
}

/// What every refusal of an unknown format lists.
pub const SUPPORTED: &str = "WAV (PCM, float, A-law, µ-law), FLAC, Ogg Vorbis, MP3, AIFF/AIFC, CAF";

/// The container of `bytes`, or why it is not one we read. Known formats we do not decode are
/// named, so the user knows what to convert.
pub fn sniff(bytes: &[u8]) -> Result<Container, String> {
    let at = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or(&[]);
    match at(0..4) {
        b"RIFF" => return Ok(Container::Wav),
        b"fLaC" => return Ok(Container::Flac),
        b"OggS" => return Ok(Container::Ogg),
        b"caff" => return Ok(Container::Caf),
        b"FORM" if matches!(at(8..12), b"AIFF" | b"AIFC") => return Ok(Container::Aiff),
        _ => {}
    }
    if at(0..3) == b"ID3" || is_mpeg_audio_frame(at(0..2)) {
        return Ok(Container::Mp3);
    }
    let known = match at(0..4) {
        b"RIFX" => Some("big-endian WAV (RIFX)"),
        b"RF64" | b"BW64" => Some("RF64/BW64 WAV"),
        b"riff" => Some("Sony Wave64"),
        b".snd" => Some("Sun/NeXT AU"),
        b"FORM" => Some("an IFF file that is not AIFF"),
        b"wvpk" => Some("WavPack"),
        b"MAC " => Some("Monkey's Audio"),
        _ if at(4..8) == b"ftyp" => Some("MP4/M4A"),
        [0x1A, 0x45, 0xDF, 0xA3] => Some("Matroska/WebM"),
        _ => None,
    };
    Err(match known {
        Some(what) => format!("{what} is not supported; supported formats: {SUPPORTED}"),
        None if bytes.is_empty() => "empty file (0 bytes)".into(),
        None => format!(
            "not an audio file this tool reads (starts with {}); supported formats: {SUPPORTED}",
            shown(at(0..4.min(bytes.len())))
        ),
    })
}

/// An MPEG audio frame header: 11 sync bits, a version other than the reserved one and a layer
/// other than the reserved one (ADTS AAC, layer 0, is excluded).
fn is_mpeg_audio_frame(b: &[u8]) -> bool {
    b.len() == 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0 && b[1] & 0x18 != 0x08 && b[1] & 0x06 != 0
}

/// The first bytes, quoted where printable and in hex otherwise.
fn shown(b: &[u8]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("'{}'", String::from_utf8_lossy(b))
    } else {
        b.iter()
            .map(|c| format!("{c:02X}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), Ok(Container::Wav));
        assert_eq!(sniff(b"fLaC\0\0\0\x22"), Ok(Container::Flac));
        assert_eq!(sniff(b"OggS\0\x02"), Ok(Container::Ogg));
        assert_eq!(sniff(b"ID3\x04\0"), Ok(Container::Mp3));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]), Ok(Container::Mp3));
        assert_eq!(sniff(b"FORM\0\0\0\0AIFC"), Ok(Container::Aiff));
        assert_eq!(sniff(b"caff\0\x01\0\0"), Ok(Container::Caf));
        // ADTS AAC has layer bits 00.
        assert!(sniff(&[0xFF, 0xF1, 0x50, 0x80]).is_err());
    }

    #[test]
    fn refusals_name_the_format_or_the_bytes() {
        let e = sniff(b".snd\0\0\0\x18").unwrap_err();
        assert!(e.contains("AU") && e.contains("FLAC"), "{e}");
        let e = sniff(b"\0\0\0\x20ftypM4A ").unwrap_err();
        assert!(e.contains("MP4"), "{e}");
        let e = sniff(&[0x00, 0x01, 0x02]).unwrap_err();
        assert!(e.contains("00 01 02"), "{e}");
        assert!(sniff(b"hello").unwrap_err().contains("'hell'"));
        assert_eq!(sniff(b"").unwrap_err(), "empty file (0 bytes)");
    }
}
