//! The compile cache on disk, as files: writing an artifact atomically, marking one used when it
//! is loaded (its modification time), and keeping the directory under its size bound by
//! removing the least recently used artifacts first. An artifact a loaded plugin was mapped from
//! can go: the mapping outlives the name, and a restart compiles it again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The default bound: a few dozen JavaScript or Python guests (30-60 MiB of artifact each) or
/// thousands of small ones.
pub const DEFAULT_CACHE_BOUND_BYTES: u64 = 2 << 30;

/// Writes `artifact` to `path` through a temporary file and a rename, so a reader never sees
/// half of it.
pub(super) fn write_artifact(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    // Unique per write: plugins load on several threads, and two may compile the same bytes.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, artifact).and_then(|()| std::fs::rename(&tmp, path))
}

/// Marks the artifact at `path` as just used (best effort: an artifact that cannot be marked is
/// only removed sooner).
pub(super) fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Removes the least recently used artifacts in `dir` until the rest take at most `bound`
/// bytes, never `keep` (the one just written). Returns how many were removed.
pub(super) fn trim(dir: &Path, bound: u64, keep: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut artifacts: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
    if total <= bound {
        return 0;
    }
    artifacts.sort_by_key(|(used, _, _)| *used);
    let mut removed = 0;
    for (_, len, path) in artifacts {
        if total <= bound {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn trimming_removes_the_least_recently_used_first_and_keeps_the_new_one() {
        let dir = std::env::temp_dir().join(format!("routerd-cache-trim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let base = SystemTime::now() - Duration::from_secs(3600);
        let file = |name: &str, age_rank: u64| {
            let path = dir.join(name);
            std::fs::write(&path, vec![0u8; 100]).expect("write");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_modified(base + Duration::from_secs(age_rank))
                .expect("mtime");
            path
        };
        let oldest = file("a.cwasm", 1);
        let middle = file("b.cwasm", 2);
        let newest = file("c.cwasm", 3);
        // The one just written is kept even though it is the oldest.
        let kept = file("d.cwasm", 0);
        std::fs::write(dir.join("other.txt"), vec![0u8; 1000]).expect("write");
        assert_eq!(trim(&dir, 1000, &kept), 0, "under the bound");
        // Marking `a` used makes `b` the least recently used.
        mark_used(&oldest);
        assert_eq!(trim(&dir, 200, &kept), 2);
        assert!(kept.exists() && oldest.exists());
        assert!(!middle.exists() && !newest.exists());
        assert!(dir.join("other.txt").exists(), "only artifacts are removed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
