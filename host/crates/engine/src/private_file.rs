//! Files only this user may read or write, replaced atomically: cached
//! native code, module bytes, keys.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` with mode 0600, atomically (a reader sees the
/// old file or the new one, never a part).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_aside(path, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// Writes `bytes` to `path` with mode 0600 unless it exists (whole, as
/// [`write`]); `false` when it did. Of writers racing to make a file, one
/// wins and every one then reads the same.
pub fn create(path: &Path, bytes: &[u8]) -> Result<bool> {
    let tmp = write_aside(path, bytes)?;
    let made = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A filesystem without hard links: the last writer wins, as with
        // [`write`].
        Err(_) => std::fs::rename(&tmp, path)
            .map(|()| true)
            .with_context(|| format!("creating {}", path.display())),
    };
    let _ = std::fs::remove_file(&tmp);
    made
}

/// A new file beside `path` holding `bytes`, named for this writer alone
/// (threads of one process too).
fn write_aside(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Engines starting at once on a fresh machine each make the cache's
    /// key: one wins, all read it, none fails on another's temporary file.
    #[test]
    fn racing_creators_agree_on_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let read: Vec<Vec<u8>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8u8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || {
                        create(path, &[i; 32]).unwrap();
                        std::fs::read(path).unwrap()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(
            read.iter().all(|k| k == &read[0] && k.len() == 32),
            "{read:?}"
        );
        assert!(
            !create(&path, &[9; 32]).unwrap(),
            "an existing file is kept"
        );
        assert_eq!(std::fs::read(&path).unwrap(), read[0]);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
