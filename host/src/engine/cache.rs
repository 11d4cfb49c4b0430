//! Compiled components cached on disk, so that a restart (or a second
//! deployment of the same module) skips compilation: Python and JavaScript
//! components take seconds to compile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::component::Component;

pub struct ArtifactCache {
    dir: PathBuf,
    /// Identifies the engine build and settings; artifacts from another
    /// engine are never loaded.
    engine_key: String,
}

impl ArtifactCache {
    pub fn new(dir: &Path, engine: &wasmtime::Engine) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating module cache directory {}", dir.display()))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache { dir: dir.to_owned(), engine_key: format!("{:016x}", hasher.finish()) })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The cached compilation of the module with sha256 `digest`, if any.
    pub fn get(&self, engine: &wasmtime::Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: only this cache writes these files, atomically (rename),
        // under a name that includes the engine's compatibility hash.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cached module");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub fn put(&self, digest: &str, component: &Component) -> Result<()> {
        let bytes = component.serialize().map_err(anyhow::Error::from).context("serializing compiled module")?;
        let path = self.path(digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }
}
