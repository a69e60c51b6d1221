//! File-system helpers shared by everything that writes results (nothing is ever half-written)
//! and by what reads the JSON configs back.

use crate::error::FileError;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

/// Name prefix of [`write_atomic`]'s temporary files.
const TEMP_PREFIX: &str = ".tmp-";

/// Removes the temporary files a killed process left in `dir` (a process killed between creating
/// and renaming its temporary file cannot remove it). Only for a folder one process owns, such
/// as a run folder: in a shared one (the feature cache) it would delete another process's file
/// before its rename. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path) -> Result<usize, FileError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FileError::new(dir, e.to_string()))?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        if is_temp && entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| FileError::new(&path, e.to_string()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, fsynced and renamed
/// into place, so a crash or a concurrent reader never sees a partial file: `path` holds either
/// its old content or the new one. The folder is fsynced too, so that after a power cut the
/// rename itself is not lost. On failure (a full disk) the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_via_temp(path, bytes, true)
}

/// [`write_atomic`] without its two fsyncs: a process that dies never leaves a partial file, but
/// a power cut may (the data can still be in the page cache). Only for derived files that are
/// cheap to regenerate: the feature cache's entries (whose reader treats a damaged one as
/// absent) and `asc features`' `.npy` files. There the two fsyncs per file were half of a pass
/// over 40 clips here, and cost far more on a spinning disk or after other writes.
pub fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_via_temp(path, bytes, false)
}

fn write_via_temp(path: &Path, bytes: &[u8], sync: bool) -> Result<(), FileError> {
    let err = |e: std::io::Error| FileError::new(path, format!("cannot write: {e}"));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    // Results are files like any other (tempfile's default is owner-only 0600): an exported
    // model or a metrics file must be readable by whoever the user shares the folder with.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    if sync {
        tmp.as_file().sync_all().map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    if sync {
        sync_folder(dir).map_err(err)?;
    }
    Ok(())
}

/// fsyncs a folder (its entries: renames into it). Not every platform or file system can open or
/// sync a folder (EINVAL): then the entries' durability across a power cut is the file
/// system's own.
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    if let Ok(folder) = std::fs::File::open(dir) {
        match folder.sync_all() {
            Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Reads a JSON file into `T`: a run's `config.json`, a `--config` or `--frontend` file. `what`
/// names the contents in the error of a file that does not parse ("bad run config: ...").
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| FileError::new(path, format!("bad {what}: {e}")))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_are_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        super::write_atomic(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o444, 0o444, "mode {mode:o}");
    }
}
