#!/usr/bin/env python3
"""Hand-made WAV headers for tests/corpus/ (called by scripts/gen_corpus.sh; stdlib only).

Writes broken files (each with a word its refusal must contain) and valid layouts sox never
writes (each with the rate, channels and frames it was built with), appending one manifest row
per file to OUT/manifest.tsv. Everything is built byte by byte, so what a file holds is known
from its construction, not from any decoder.
"""

import math
import random
import struct
import sys
from pathlib import Path

OUT = Path(sys.argv[1])
MANIFEST = OUT / "manifest.tsv"
GUID_TAIL = bytes([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71])


def chunk(cid: bytes, body: bytes, size=None, pad=True) -> bytes:
    """A RIFF chunk; `size` overrides the length field (absurd sizes), pad adds the odd byte."""
    n = len(body) if size is None else size
    out = cid + struct.pack("<I", n) + body
    if pad and len(body) % 2 == 1:
        out += b"\0"
    return out


def fmt_body(tag, channels, rate, bits, align=None):
    align = channels * bits // 8 if align is None else align
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align & 0xFFFFFFFF, align, bits)


def fmt(tag, channels, rate, bits, align=None):
    return chunk(b"fmt ", fmt_body(tag, channels, rate, bits, align))


def fmt_ext(sub, channels, rate, container, valid):
    body = fmt_body(0xFFFE, channels, rate, container)
    body += struct.pack("<HHI", 22, valid, 0) + struct.pack("<H", sub) + GUID_TAIL
    return chunk(b"fmt ", body)


def riff(*chunks, size=None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def sine(n, amp=0.5, period=37):
    return [amp * math.sin(2 * math.pi * i / period) for i in range(n)]


def s16(values):
    return b"".join(struct.pack("<h", max(-32768, min(32767, round(v * 32768)))) for v in values)


def left_justified(values, valid, container):
    """Integers of `valid` bits shifted to the top of `container`-bit words (the
    WAVE_FORMAT_EXTENSIBLE rule: padding bits are the low ones and zero)."""
    out = b""
    for v in values:
        q = max(-(1 << (valid - 1)), min((1 << (valid - 1)) - 1, round(v * (1 << (valid - 1)))))
        word = (q << (container - valid)) & ((1 << container) - 1)
        out += word.to_bytes(container // 8, "little")
    return out


def f32(values):
    return b"".join(struct.pack("<f", v) for v in values)


def f64(values):
    return b"".join(struct.pack("<d", v) for v in values)


ROWS = []


def ok(name, data, rate, channels, frames):
    (OUT / name).write_bytes(data)
    ROWS.append(f"{name}\tok\t\t{rate}\t{channels}\t{frames}")


def err(name, data, words):
    (OUT / name).write_bytes(data)
    ROWS.append(f"{name}\terror\t{words}\t\t\t")


def main():
    data16 = s16(sine(64))  # 64 mono 16-bit frames
    pcm = fmt(1, 1, 16000, 16)

    # --- valid layouts sox does not write ---------------------------------------------------
    ok("zero_frames.wav", riff(pcm, chunk(b"data", b"")), 16000, 1, 0)
    ok("one_frame.wav", riff(pcm, chunk(b"data", s16([0.25]))), 16000, 1, 1)
    ok("partial_last_frame.wav", riff(fmt(1, 2, 44100, 16), chunk(b"data", b"\1\0\2\0\3")), 44100, 2, 1)
    ok(
        "list_before_fmt_cue_after.wav",
        riff(chunk(b"LIST", b"INFOISFT\x05\0\0\0asc\0\0"), pcm, chunk(b"data", data16), chunk(b"cue ", b"\1\2\3")),
        16000, 1, 64,
    )
    ok("data_before_fmt.wav", riff(chunk(b"data", data16), pcm), 16000, 1, 64)
    ok("riff_size_0.wav", riff(pcm, chunk(b"data", data16), size=0), 16000, 1, 64)
    ok("riff_size_ffffffff.wav", riff(pcm, chunk(b"data", data16), size=0xFFFFFFFF), 16000, 1, 64)
    ok("fmt_18_cbsize_0.wav", riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16) + b"\0\0"), chunk(b"data", data16)), 16000, 1, 64)
    ok("fmt_20_extra_bytes.wav", riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16) + b"\0\0\xab\xcd"), chunk(b"data", data16)), 16000, 1, 64)
    ok("two_data_chunks.wav", riff(pcm, chunk(b"data", data16), chunk(b"data", data16[:10])), 16000, 1, 64)
    ok("trailing_garbage.wav", riff(pcm, chunk(b"data", data16)) + b"\xde\xad\xbe", 16000, 1, 64)
    ok("odd_data_no_pad_at_eof.wav", riff(fmt(1, 1, 8000, 8), chunk(b"data", b"\x80\x90\x70", pad=False)), 8000, 1, 3)
    ok("odd_junk_with_pad.wav", riff(pcm, chunk(b"junk", b"\7"), chunk(b"data", data16)), 16000, 1, 64)
    # WAVE_FORMAT_EXTENSIBLE with fewer valid bits than the container holds (left-justified).
    ramp = [i / 40 - 0.9 for i in range(72)]
    ok("ext_s24_in_32_stereo.wav", riff(fmt_ext(1, 2, 48000, 32, 24), chunk(b"data", left_justified(ramp, 24, 32))), 48000, 2, 36)
    ok("ext_s20_in_24.wav", riff(fmt_ext(1, 1, 96000, 24, 20), chunk(b"data", left_justified(ramp, 20, 24))), 96000, 1, 72)
    ok("ext_s12_in_16.wav", riff(fmt_ext(1, 1, 16000, 16, 12), chunk(b"data", left_justified(ramp, 12, 16))), 16000, 1, 72)
    ok("ext_valid_bits_0.wav", riff(fmt_ext(1, 1, 16000, 16, 0), chunk(b"data", data16)), 16000, 1, 64)
    ok("ext_u8.wav", riff(fmt_ext(1, 1, 8000, 8, 8), chunk(b"data", bytes(range(0, 256, 8)))), 8000, 1, 32)
    ok("ext_f64.wav", riff(fmt_ext(3, 2, 22050, 64, 64), chunk(b"data", f64(sine(20)))), 22050, 2, 10)
    ok("float_loud.wav", riff(fmt(3, 1, 16000, 32), chunk(b"data", f32([8.0, -8.0, 0.0, 100.0]))), 16000, 1, 4)

    # --- not WAV at all, under a .wav name ---------------------------------------------------
    err("empty.wav", b"", "empty file (0 bytes)")
    err("riff_only.wav", b"RIFF", "too short")
    err("header_only.wav", riff(), "no 'fmt ' chunk")
    err("text.wav", b"This is a text file someone named .wav\n", "not an audio file this tool reads (starts with 'This'")
    err("html.wav", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "not an audio file")
    err("png.wav", b"\x89PNG\r\n\x1a\n" + bytes(200), "not an audio file")
    # Other containers' magic bytes followed by nothing valid: sniffed as that container (the
    # name does not decide), then refused by its reader.
    err("mp3_id3.wav", b"ID3\x04\0\0\0\0\0\x21" + bytes(300), "MP3: no readable stream")
    err("flac.wav", b"fLaC\0\0\0\x22" + bytes(100), "FLAC: corrupt")
    err("ogg.wav", b"OggS\0\x02" + bytes(100), "Ogg: corrupt")
    err("zeros.wav", bytes(1024), "not an audio file")
    err("random_bytes.wav", random.Random(7).randbytes(2048), "not an audio file")
    err("au.wav", b".snd" + struct.pack(">IIIII", 24, 128, 3, 8000, 1) + bytes(128), "AU is not supported")
    err("wave64.wav", b"riff" + bytes(60), "Wave64 is not supported")
    err("riff_avi.wav", b"RIFF" + struct.pack("<I", 4) + b"AVI ", "not 'WAVE'")
    err("rifx_big_endian.wav", b"RIFX" + struct.pack(">I", 36) + b"WAVE" + bytes(40), "RIFX")
    err("rf64.wav", b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + bytes(40), "RF64")

    # --- broken headers ----------------------------------------------------------------------
    body = chunk(b"data", data16)
    err("rate_0.wav", riff(fmt(1, 1, 0, 16), body), "sample rate 0")
    err("rate_1.wav", riff(fmt(1, 1, 1, 16), body), "sample rate 1 Hz")
    err("rate_999.wav", riff(fmt(1, 1, 999, 16), body), "sample rate 999 Hz")
    err("rate_768001.wav", riff(fmt(1, 1, 768001, 16), body), "sample rate 768001 Hz")
    err("rate_u32_max.wav", riff(fmt(1, 1, 0xFFFFFFFF, 16), body), "sample rate 4294967295 Hz")
    err("channels_0.wav", riff(fmt(1, 0, 16000, 16), body), "0 channels")
    err("channels_300.wav", riff(fmt(1, 300, 16000, 16), body), "300 channels")
    err("block_align_3.wav", riff(fmt(1, 2, 16000, 16, align=3), body), "block alignment 3")
    err("block_align_0.wav", riff(fmt(1, 1, 16000, 16, align=0), body), "block alignment 0")
    # Sizes a writer that cannot seek leaves (pipes, live encoders): the data runs to the end.
    ok("data_size_ffffffff.wav", riff(pcm, chunk(b"data", data16, size=0xFFFFFFFF)), 16000, 1, 64)
    ok("data_size_sox_pipe.wav", riff(pcm, chunk(b"data", data16, size=0x7FFFF000), size=0x7FFFF048), 16000, 1, 64)
    ok("data_and_riff_size_0.wav", riff(pcm, chunk(b"data", data16, size=0), size=0), 16000, 1, 64)
    # A 0 under a real RIFF size is an empty data chunk, and what follows is another chunk.
    ok("data_size_0_then_list.wav", riff(pcm, chunk(b"data", b""), chunk(b"LIST", b"INFO")), 16000, 1, 0)
    err("data_size_1gb.wav", riff(pcm, chunk(b"data", data16, size=1 << 30)), "data chunk claims 1073741824 bytes")
    err("fmt_size_huge.wav", riff(chunk(b"fmt ", fmt_body(1, 1, 16000, 16), size=0x7FFFFFFF), body), "chunk 'fmt ' at byte 12 claims 2147483647")
    err("list_size_huge.wav", riff(chunk(b"LIST", b"INFO", size=0xFFFFFFF0), pcm, body), "chunk 'LIST' at byte 12 claims")
    err("chunk_after_data_huge.wav", riff(pcm, body, chunk(b"junk", b"ab", size=0x10000000)), "chunk 'junk'")
    err("fmt_4_bytes.wav", riff(chunk(b"fmt ", b"\1\0\1\0"), body), "at least 16")
    err("ext_fmt_18_bytes.wav", riff(chunk(b"fmt ", fmt_body(0xFFFE, 1, 16000, 16) + b"\0\0"), body), "40 are needed")
    err("ext_guid_mp3.wav", riff(fmt_ext(0x55, 1, 16000, 16, 16), body), "format tag 0x0055")
    err("ext_valid_32_in_16.wav", riff(fmt_ext(1, 1, 16000, 16, 32), body), "sample width")
    err("pcm_12_bit_container.wav", riff(fmt(1, 1, 16000, 12, align=2), body), "sample width")
    err("pcm_64_bit.wav", riff(fmt(1, 1, 16000, 64), body), "sample width")
    err("pcm_0_bit.wav", riff(fmt(1, 1, 16000, 0, align=2), body), "sample width")
    err("float_16_bit.wav", riff(fmt(3, 1, 16000, 16), body), "sample width")
    err("tag_0.wav", riff(fmt(0, 1, 16000, 16), body), "format tag 0x0000")
    err("no_data_chunk.wav", riff(pcm, chunk(b"LIST", b"INFO")), "no 'data' chunk")
    err("no_fmt_chunk.wav", riff(body), "no 'fmt ' chunk")
    # Float samples that are not audio: NaN, infinities, values no mixer produces.
    fl = fmt(3, 1, 16000, 32)
    err("float_nan.wav", riff(fl, chunk(b"data", f32([0.0, 0.1, math.nan, 0.2]))), "sample 2 (frame 2, channel 0) is NaN")
    err("float_inf.wav", riff(fl, chunk(b"data", f32([math.inf, 0.0]))), "is inf")
    err("float_neg_inf_stereo.wav", riff(fmt(3, 2, 16000, 32), chunk(b"data", f32([0.0, 0.0, 0.5, -math.inf]))), "sample 3 (frame 1, channel 1) is -inf")
    err("float_huge.wav", riff(fl, chunk(b"data", f32([0.0, 1e20]))), "beyond")
    err("f64_nan.wav", riff(fmt(3, 1, 16000, 64), chunk(b"data", f64([math.nan]))), "is NaN")
    err("f64_beyond_f32.wav", riff(fmt(3, 1, 16000, 64), chunk(b"data", f64([1e300]))), "beyond")
    err("int_data_labelled_float.wav", riff(fl, chunk(b"data", bytes([0x00, 0x00, 0xC0, 0x7F] * 4))), "is NaN")

    with MANIFEST.open("a") as m:
        m.write("".join(r + "\n" for r in ROWS))


if __name__ == "__main__":
    main()
