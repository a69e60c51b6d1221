//! Cutting a recording into the model's windows: the training clip length, back to back, with
//! the last window aligned to the end so every frame is seen and no window is padded.

/// A window of `len` frames starting at frame `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub len: usize,
}

/// Recordings shorter than this many frames are tiled up to it: below it the `cnn`'s 5 × 5
/// max-pool would see an empty map.
pub const MIN_FRAMES: usize = 5;

/// Windows of `clip` frames over `frames` frames. A recording no longer than one clip is one
/// window of its own length, not padded or tiled, so every runtime fed the whole recording
/// (e.g. onnxruntime with a `--waveform` model) sees the same input; only recordings shorter
/// than [`MIN_FRAMES`] are tiled (by the caller) up to that length.
pub fn window_starts(frames: usize, clip: usize) -> Vec<Window> {
    let clip = clip.max(MIN_FRAMES);
    if frames <= clip {
        return vec![Window {
            start: 0,
            len: frames.max(MIN_FRAMES),
        }];
    }
    let mut out: Vec<Window> = (0..frames / clip)
        .map(|i| Window {
            start: i * clip,
            len: clip,
        })
        .collect();
    if !frames.is_multiple_of(clip) {
        out.push(Window {
            start: frames - clip,
            len: clip,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_exact_and_long_recordings() {
        assert_eq!(window_starts(10, 65), vec![Window { start: 0, len: 10 }]);
        assert_eq!(
            window_starts(3, 65),
            vec![Window {
                start: 0,
                len: MIN_FRAMES
            }]
        );
        assert_eq!(window_starts(65, 65), vec![Window { start: 0, len: 65 }]);
        let w = window_starts(140, 65);
        assert_eq!(
            w.iter().map(|w| w.start).collect::<Vec<_>>(),
            vec![0, 65, 75]
        );
        assert!(w.iter().all(|w| w.start + w.len <= 140));
        assert_eq!(window_starts(130, 65).len(), 2);
    }
}
