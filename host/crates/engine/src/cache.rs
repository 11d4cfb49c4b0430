//! Compiled components cached on disk, so that a restart (or a second
//! deployment of the same module) skips compilation: Python and JavaScript
//! components take seconds to compile.
//!
//! A cached file is native code the host maps and runs, so it is trusted
//! only if this cache wrote it: each artifact carries an HMAC-SHA256 under
//! a key that lives in the cache directory, readable by this user alone
//! (the directory is `0700`, the files `0600`). A file written by anyone
//! else (another user, a process that cannot read the key) fails the check
//! and is compiled again. The bytes checked are the bytes loaded.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;

const KEY_FILE: &str = "cache.key";
const MAC_BYTES: usize = 32;

pub struct ArtifactCache {
    dir: PathBuf,
    /// Identifies the engine build and settings; artifacts from another
    /// engine are never loaded.
    engine_key: String,
    key: [u8; 32],
}

impl ArtifactCache {
    pub fn new(dir: &Path, engine: &wasmtime::Engine) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating module cache directory {}", dir.display()))?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("module cache directory {} is open to other users (mode {:o}) and cannot be closed", dir.display(), mode & 0o777))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", hasher.finish()),
            key: load_key(&dir.join(KEY_FILE))?,
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// The cached compilation of the module with sha256 `digest`, if any
    /// that this cache wrote.
    pub fn get(&self, engine: &wasmtime::Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        let authentic = bytes.len() > MAC_BYTES && {
            let (artifact, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
            let mut mac = self.mac();
            mac.update(artifact);
            mac.verify_slice(tag).is_ok()
        };
        if !authentic {
            tracing::warn!(path = %path.display(), "discarding a cached module this host did not write; compiling it again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // SAFETY: the bytes are what this cache serialized for this engine
        // build (the name carries its compatibility hash), authenticated
        // above, and not read from the file again.
        match unsafe { Component::deserialize(engine, &bytes[..bytes.len() - MAC_BYTES]) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cached module");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub fn remove(&self, digest: &str) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    pub fn put(&self, digest: &str, component: &Component) -> Result<()> {
        let mut bytes = component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("serializing compiled module")?;
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        let path = self.path(digest);
        crate::private_file::write(&path, &bytes)
    }
}

/// The cache's key, made on first use.
fn load_key(path: &Path) -> Result<[u8; 32]> {
    if let Ok(key) = std::fs::read(path) {
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "module cache key {} is readable by other users (mode {:o}); delete it and the cache",
                path.display(),
                mode & 0o777
            );
        }
        return key.try_into().map_err(|_| {
            anyhow::anyhow!(
                "module cache key {} is damaged; delete it and the cache",
                path.display()
            )
        });
    }
    let key: [u8; 32] = rand::random();
    // Another engine may make one at the same time: all use the first.
    crate::private_file::create(path, &key)?;
    let stored = std::fs::read(path)?;
    stored
        .try_into()
        .map_err(|_| anyhow::anyhow!("module cache key {} is damaged", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached module replaced by other bytes (another process's native
    /// code, say) is refused and compiled again; the cache's own is loaded.
    #[test]
    fn a_tampered_artifact_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            wasmtime::Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap();
        let component = Component::new(&engine, "(component)").unwrap();
        let cache = ArtifactCache::new(dir.path(), &engine).unwrap();
        cache.put("d", &component).unwrap();
        assert!(cache.get(&engine, "d").is_some());
        let mode = std::fs::metadata(cache.path("d"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Someone else's valid artifact under the same name, without our key.
        let forged = component.serialize().unwrap();
        std::fs::write(cache.path("d"), [forged.as_slice(), &[0; 32]].concat()).unwrap();
        assert!(cache.get(&engine, "d").is_none(), "refused");
        assert!(!cache.path("d").exists(), "and deleted");
        // A new cache on the same directory keeps the key and trusts its files.
        cache.put("d", &component).unwrap();
        assert!(
            ArtifactCache::new(dir.path(), &engine)
                .unwrap()
                .get(&engine, "d")
                .is_some()
        );
    }
}
