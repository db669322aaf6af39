//! Watching the config file (and any other set of files, such as TLS certificates): notify
//! events on their directories (editors replace files by rename),
//! debounced, become reload signals. The caller reloads, and keeps its last good table when the
//! new file is invalid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the file must be quiet before it is read, so a half-written file is not loaded.
pub const SETTLE: Duration = Duration::from_millis(150);

/// A running watch; dropping it stops the notifications.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl FileWatch {
    /// Starts watching `file` (which need not exist yet).
    pub fn new(file: &Path) -> notify::Result<FileWatch> {
        FileWatch::paths(&[file.to_path_buf()], None)
    }

    /// Starts watching `files` (which need not exist yet) and every file directly in `dir`.
    pub fn paths(files: &[PathBuf], dir: Option<&Path>) -> notify::Result<FileWatch> {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        let dir = dir.map(absolute);
        // Their directories, not the files: editors and `mv` replace a file by rename.
        let mut watched: Vec<PathBuf> = files
            .iter()
            .map(|f| {
                f.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."))
            })
            .chain(dir.clone())
            .collect();
        watched.sort();
        watched.dedup();
        let (tx, rx) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let wanted = |p: &PathBuf| {
                    files.contains(p) || dir.as_deref().is_some_and(|d| p.parent() == Some(d))
                };
                if event.paths.iter().any(wanted) {
                    // A full channel already holds a pending reload.
                    let _ = tx.try_send(());
                }
            })?;
        for d in &watched {
            watcher.watch(d, RecursiveMode::NonRecursive)?;
        }
        Ok(FileWatch {
            _watcher: watcher,
            rx,
        })
    }

    /// Waits for the next change, then for the file to settle.
    pub async fn changed(&mut self) -> Option<()> {
        self.rx.recv().await?;
        loop {
            match tokio::time::timeout(SETTLE, self.rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return None,
                Err(_) => return Some(()),
            }
        }
    }
}
