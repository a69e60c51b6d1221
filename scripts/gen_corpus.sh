#!/usr/bin/env bash
# Regenerates tests/corpus/: odd-but-valid and broken WAV files for tests/corpus.rs, with a
# manifest (tests/corpus/manifest.tsv) of what each must give: `ok` with the rate, channels and
# frame count an independent tool (sox/soxi, or the construction itself) says it has, or `error`
# with a word the reason must contain.
#
# Valid files of every encoding, rate and channel count come from sox; hand-made headers (broken
# ones, and valid layouts sox never writes) come from scripts/gen_corpus_broken.py (python3
# stdlib only). CI does not run this script: the corpus is committed. Usage:
#   scripts/gen_corpus.sh            # rewrites tests/corpus/
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/tests/corpus"

if ! command -v sox >/dev/null || ! command -v soxi >/dev/null; then
    echo "sox not found: installing it from the Debian packages" >&2
    apt-get install -y sox >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y sox >/dev/null; }
fi

rm -rf "$out"
mkdir -p "$out"
manifest="$out/manifest.tsv"
printf 'file\texpect\treason\tsample_rate\tchannels\tframes\n' >"$manifest"

# ok NAME: records a sox-written file with what soxi (not our decoder) says it holds.
ok() {
    local f="$out/$1"
    printf '%s\tok\t\t%s\t%s\t%s\n' "$1" "$(soxi -r "$f")" "$(soxi -c "$f")" "$(soxi -s "$f")" >>"$manifest"
}

# err NAME WORDS: a file that must be refused with a reason containing WORDS.
err() {
    printf '%s\terror\t%s\t\t\t\n' "$1" "$2" >>"$manifest"
}

# gen NAME OPTIONS... : EFFECTS... runs `sox -R OPTIONS... OUT/NAME EFFECTS...`; -R makes noise
# and dither repeatable, so the corpus is the same on every run.
gen() {
    local name="$1" opts=()
    shift
    while [ "$1" != ":" ]; do
        opts+=("$1")
        shift
    done
    shift
    sox -V1 -R "${opts[@]}" "$out/$name" "$@"
}

# Every encoding the decoder supports: 8-bit unsigned, 16/24/32-bit signed, 32/64-bit float.
for enc in "u8:-e unsigned -b 8" "s16:-e signed -b 16" "s24:-e signed -b 24" \
    "s32:-e signed -b 32" "f32:-e floating-point -b 32" "f64:-e floating-point -b 64"; do
    tag="${enc%%:*}"
    flags="${enc#*:}"
    # shellcheck disable=SC2086
    gen "enc_${tag}_16k_mono.wav" -n -r 16000 -c 1 $flags : synth 0.1 sine 440 vol 0.5
    # shellcheck disable=SC2086
    gen "enc_${tag}_44k1_stereo.wav" -n -r 44100 -c 2 $flags : synth 0.02 pinknoise
    ok "enc_${tag}_16k_mono.wav"
    ok "enc_${tag}_44k1_stereo.wav"
done

# Sample rates from 8 kHz to 192 kHz, and the accepted limits 1 kHz and 768 kHz.
for rate in 1000 8000 11025 12000 16000 22050 24000 32000 44100 48000 64000 88200 96000 \
    176400 192000 384000 768000; do
    gen "rate_${rate}.wav" -n -r "$rate" -c 1 -b 16 : synth 0.01 sine 300
    ok "rate_${rate}.wav"
done

# 1 to 8 channels (sox writes WAVE_FORMAT_EXTENSIBLE above 2), and 24-bit 6-channel 96 kHz.
for ch in 1 2 3 4 5 6 7 8; do
    gen "channels_${ch}.wav" -n -r 48000 -c "$ch" -b 16 : synth 0.01 sine 500
    ok "channels_${ch}.wav"
done
gen "channels_6_s24_96k.wav" -n -r 96000 -c 6 -b 24 : synth 0.01 whitenoise vol 0.3
ok "channels_6_s24_96k.wav"

# Silence (no dither: -D), a full-scale square wave, very short clips.
gen "silent_s16.wav" -D -n -r 16000 -c 1 -b 16 : trim 0 0.5
ok "silent_s16.wav"
gen "silent_u8_stereo.wav" -D -n -r 8000 -c 2 -e unsigned -b 8 : trim 0 0.2
ok "silent_u8_stereo.wav"
gen "silent_f32.wav" -D -n -r 32000 -c 1 -e floating-point -b 32 : trim 0 0.1
ok "silent_f32.wav"
gen "full_scale_square.wav" -D -n -r 22050 -c 1 -b 16 : synth 0.05 square 100
ok "full_scale_square.wav"
gen "short_10_samples.wav" -n -r 44100 -c 1 -b 16 : synth 10s sine 440
ok "short_10_samples.wav"
gen "short_2ms_192k_8ch_f64.wav" -n -r 192000 -c 8 -e floating-point -b 64 : synth 0.002 sine 1000
ok "short_2ms_192k_8ch_f64.wav"

# G.711 WAV (telephony, many field recorders' "voice" modes).
gen "codec_alaw.wav" -n -r 8000 -c 1 -e a-law : synth 0.05 sine 440
ok "codec_alaw.wav"
gen "codec_ulaw.wav" -n -r 8000 -c 1 -e u-law : synth 0.05 sine 440
ok "codec_ulaw.wav"
gen "codec_ulaw_stereo_16k.wav" -n -r 16000 -c 2 -e u-law : synth 0.05 pinknoise
ok "codec_ulaw_stereo_16k.wav"

# Valid WAV encodings the decoder does not support: refused with the encoding's name.
gen "codec_ima_adpcm.wav" -n -r 16000 -c 1 -e ima-adpcm : synth 0.05 sine 440
err "codec_ima_adpcm.wav" "ADPCM"
gen "codec_ms_adpcm.wav" -n -r 16000 -c 1 -e ms-adpcm : synth 0.05 sine 440
err "codec_ms_adpcm.wav" "ADPCM"
gen "codec_gsm.wav" -n -r 8000 -c 1 -e gsm-full-rate : synth 0.05 sine 440
err "codec_gsm.wav" "format tag 0x0031"

# A valid file cut short inside its data, and inside its header.
gen "cut_source.wav" -n -r 16000 -c 1 -b 16 : synth 0.05 sine 440
head -c 1000 "$out/cut_source.wav" >"$out/truncated_data.wav"
err "truncated_data.wav" "truncated"
head -c 30 "$out/cut_source.wav" >"$out/truncated_in_fmt.wav"
err "truncated_in_fmt.wav" "chunk 'fmt ' at byte 12 claims"
rm "$out/cut_source.wav"

# Other containers (issue 18), each valid at a few rates, widths and channel counts, cut short,
# cut inside its header, and with bytes flipped inside its audio. Frame counts come from soxi
# (libFLAC, libvorbisfile, libsndfile) except for MP3, where sox's libmad ignores the LAME
# header's encoder delay and padding: there ffmpeg, which honours it, counts the frames.
for tool in flac oggenc lame ffmpeg; do
    command -v "$tool" >/dev/null || apt-get install -y flac vorbis-tools lame ffmpeg libsox-fmt-all >/dev/null
done
ffmpeg_frames() {
    local f="$out/$1" ch
    ch=$(soxi -c "$f" 2>/dev/null || echo 1)
    echo $(($(ffmpeg -loglevel error -i "$f" -f s16le - | wc -c) / 2 / ch))
}
ok_ffmpeg() {
    local f="$out/$1"
    probe() { ffprobe -v error -select_streams a:0 -show_entries "stream=$1" -of csv=p=0 "$f" | tr -d ,; }
    printf '%s\tok\t\t%s\t%s\t%s\n' "$1" "$(probe sample_rate)" "$(probe channels)" "$(ffmpeg_frames "$1")" >>"$manifest"
}
# variants NAME EXPECT_TRUNCATED EXPECT_CORRUPT: NAME cut in half, cut to 40 bytes, and with 16
# bytes flipped in its second half; an empty EXPECT means "decodes" (checked by ok_ffmpeg).
variants() {
    local name="$1" stem="${1%.*}" ext="${1##*.}" size
    size=$(stat -c %s "$out/$name")
    head -c $((size / 2)) "$out/$name" >"$out/${stem}_cut_half.$ext"
    if [ -n "$2" ]; then err "${stem}_cut_half.$ext" "$2"; else ok_ffmpeg "${stem}_cut_half.$ext"; fi
    head -c 40 "$out/$name" >"$out/${stem}_cut_header.$ext"
    err "${stem}_cut_header.$ext" "truncated"
    python3 - "$out/$name" "$out/${stem}_flipped.$ext" <<'PY'
import random, sys
b = bytearray(open(sys.argv[1], "rb").read())
rng = random.Random(18)
for _ in range(16):
    b[rng.randrange(len(b) // 2, len(b))] ^= 0xFF
open(sys.argv[2], "wb").write(b)
PY
    if [ -n "$3" ]; then err "${stem}_flipped.$ext" "$3"; else ok_ffmpeg "${stem}_flipped.$ext"; fi
}
gen "src_s16_stereo.wav" -n -r 44100 -c 2 -b 16 : synth 0.3 sine 440 sine 660 vol 0.5
gen "src_s24_mono_48k.wav" -n -r 48000 -c 1 -b 24 : synth 0.3 pinknoise vol 0.5
flac -s -f "$out/src_s16_stereo.wav" -o "$out/flac_s16_stereo.flac"
flac -s -f "$out/src_s24_mono_48k.wav" -o "$out/flac_s24_mono_48k.flac"
gen "flac_s16_6ch_96k.flac" -n -r 96000 -c 6 -b 16 : synth 0.05 whitenoise vol 0.3
ok "flac_s16_stereo.flac"
ok "flac_s24_mono_48k.flac"
ok "flac_s16_6ch_96k.flac"
variants "flac_s16_stereo.flac" "truncated" "corrupt"
oggenc -Q "$out/src_s16_stereo.wav" -o "$out/vorbis_stereo.ogg"
oggenc -Q "$out/src_s24_mono_48k.wav" -o "$out/vorbis_mono_48k.ogg"
ok "vorbis_stereo.ogg"
ok "vorbis_mono_48k.ogg"
variants "vorbis_stereo.ogg" "truncated" "corrupt"
lame --quiet "$out/src_s16_stereo.wav" "$out/mp3_stereo.mp3"
lame --quiet -m m --resample 22.05 "$out/src_s24_mono_48k.wav" "$out/mp3_mono_22k.mp3"
# Without the Xing/LAME header frame (-t) nothing declares the length: a cut file decodes.
lame --quiet -t "$out/src_s16_stereo.wav" "$out/mp3_no_lame_header.mp3"
ok_ffmpeg "mp3_stereo.mp3"
ok_ffmpeg "mp3_mono_22k.mp3"
ok_ffmpeg "mp3_no_lame_header.mp3"
variants "mp3_stereo.mp3" "truncated" ""
# Cut at a frame boundary (ffprobe's packet positions): a partial last frame is dropped by us
# and concealed by ffmpeg, so only whole frames give both the same count.
cut_at=$(ffprobe -v error -select_streams a:0 -show_entries packet=pos -of csv=p=0 "$out/mp3_no_lame_header.mp3" | sed -n 7p)
head -c "$cut_at" "$out/mp3_no_lame_header.mp3" >"$out/mp3_no_lame_header_cut.mp3"
ok_ffmpeg "mp3_no_lame_header_cut.mp3"
gen "aiff_s16_stereo.aiff" -n -r 44100 -c 2 -b 16 : synth 0.05 sine 440
gen "aiff_s24_mono_96k.aiff" -n -r 96000 -c 1 -b 24 : synth 0.05 sine 440
gen "aifc_f32_stereo.aifc" -n -r 48000 -c 2 -e floating-point -b 32 : synth 0.05 sine 440
gen "caf_s16_stereo.caf" -n -r 44100 -c 2 -b 16 : synth 0.05 sine 440
gen "caf_f32_mono.caf" -n -r 32000 -c 1 -e floating-point -b 32 : synth 0.05 sine 440
for f in aiff_s16_stereo.aiff aiff_s24_mono_96k.aiff aifc_f32_stereo.aifc caf_s16_stereo.caf caf_f32_mono.caf; do
    ok "$f"
done
# PCM has no checksum: flipped sample bytes decode, like a WAV's.
variants "aiff_s16_stereo.aiff" "truncated" ""
variants "caf_s16_stereo.caf" "truncated" ""
# sox writes G.711 in CAF, which symphonia's PCM decoder refuses (a known gap, README).
gen "caf_alaw.caf" -n -r 8000 -c 1 -e a-law : synth 0.05 sine 440
err "caf_alaw.caf" "CAF"
rm "$out/src_s16_stereo.wav" "$out/src_s24_mono_48k.wav"

# Hand-made headers, broken and odd; appends to the manifest itself.
python3 "$root/scripts/gen_corpus_broken.py" "$out"

files=$(($(wc -l <"$manifest") - 1))
echo "wrote $files files ($(du -sh --apparent-size "$out" | cut -f1)) and $manifest"
