//! `.npy` files of spectrograms: float32, shape `[n_mels, frames]` (what `np.load` expects).

use super::logmel::Spectrogram;
use crate::error::FileError;
use ndarray::{Array2, ArrayView2};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::Path;

/// Writes `spec` through a temporary file renamed into place, without fsync: a process that
/// dies never leaves a partial `.npy`, but a power cut within the kernel's writeback delay can
/// (rerunning recreates it). Spectrograms are derived data, about a millisecond each to
/// recompute; fsyncing each of a folder's files made the disk, not the front end, set the pace of
/// `asc features` (docs/benchmarks.md: 40 clips, 0.069 → 0.043 s).
pub fn write(path: &Path, spec: &Spectrogram) -> Result<(), FileError> {
    crate::fsutil::write_renamed(path, &encode(path, spec)?)
}

/// `spec` as the bytes of a `.npy` file (`path` names it in errors).
pub fn encode(path: &Path, spec: &Spectrogram) -> Result<Vec<u8>, FileError> {
    let array = ArrayView2::from_shape((spec.n_mels, spec.frames), &spec.data)
        .map_err(|e| FileError::new(path, e.to_string()))?;
    let mut bytes = Vec::with_capacity(128 + 4 * spec.data.len());
    array
        .write_npy(&mut bytes)
        .map_err(|e| FileError::new(path, e.to_string()))?;
    Ok(bytes)
}

/// Reads a float32 2-D `.npy` file.
pub fn read(path: &Path) -> Result<Spectrogram, FileError> {
    let file = std::fs::File::open(path).map_err(|e| FileError::new(path, e.to_string()))?;
    let array = Array2::<f32>::read_npy(std::io::BufReader::new(file))
        .map_err(|e| FileError::new(path, format!("not a float32 2-D .npy file: {e}")))?;
    let (n_mels, frames) = array.dim();
    let data = if array.is_standard_layout() {
        array.into_raw_vec_and_offset().0
    } else {
        array.iter().copied().collect()
    };
    Ok(Spectrogram {
        n_mels,
        frames,
        data,
    })
}
