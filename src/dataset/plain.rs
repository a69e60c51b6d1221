//! Reader of the plain layout `ROOT/<label>/**/*.{wav,flac,ogg,mp3,aiff,caf}`: the label is the top-level folder name.
//! All clips go to the train list; carve a validation split with
//! [`validation_split`](super::validation_split), which treats each clip as its own location.

use std::path::Path;

use super::{escapes_root, Clip, Dataset, DatasetError, LabelMap, Layout, LoadOptions, LoadReport};

pub(super) fn open(root: &Path, _opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let io = |path: &Path, source: std::io::Error| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut found: Vec<(String, String)> = Vec::new(); // (relative filename, label)
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| io(root, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(root, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let Some(label) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not valid UTF-8: cannot be a label name
        };
        if label.starts_with('.') {
            continue;
        }
        for item in walkdir::WalkDir::new(&dir)
            .follow_links(true)
            .sort_by_file_name()
        {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(&dir).to_path_buf();
                io(&path, e.into())
            })?;
            let p = item.path();
            if !item.file_type().is_file() || !crate::audio::is_audio(p) {
                continue;
            }
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if escapes_root(&rel) {
                continue;
            }
            found.push((rel, label.clone()));
        }
    }
    if found.is_empty() {
        return Err(DatasetError::Empty {
            root: root.to_path_buf(),
            hint: "no meta.csv (DCASE layout) and no ROOT/<label>/ audio files (plain layout)"
                .into(),
        });
    }
    let labels = LabelMap::new(found.iter().map(|(_, l)| l.clone()));
    let clips: Vec<Clip> = found
        .into_iter()
        .map(|(filename, label)| Clip {
            path: root.join(&filename),
            label: labels.index(&label),
            device: None,
            city: None,
            location: None,
            filename,
        })
        .collect();
    Ok(Dataset {
        root: root.to_path_buf(),
        layout: Layout::Plain,
        labels,
        train: (0..clips.len()).collect(),
        evaluate: Vec::new(),
        test: Vec::new(),
        clips,
        report: LoadReport::default(),
    })
}
