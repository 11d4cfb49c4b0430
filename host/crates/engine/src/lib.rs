//! The one wasmtime engine of a host process: configuration, sandbox
//! limits, loading and validating components, and the compiled-artifact
//! cache.
//!
//! Modules depend one way (`scripts/module-cycles` checks it), but for:
//! Circle: transform/dispatch.rs transform/timers.rs — one type's `impl`
//! (`Transform`) in two files: running batches, and firing the timers
//! that batches and the clock make due.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

pub mod bindings;
pub mod cache;
pub mod capabilities;
pub mod compile;
pub mod host_state;
pub mod limits;
pub mod offline;
pub mod private_file;
pub mod transform;
pub mod validate;
pub mod wasi;

use crate::bindings::{Pre, WorldVersion};
use crate::host_state::HostState;
pub use validate::LoadError;

/// Settings of the shared engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Where compiled modules are cached; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Largest component accepted, in MiB.
    pub max_module_mb: u64,
    /// Stack a call into wasm may use, in KiB. Worker threads get this plus
    /// room for the host, so guest recursion ends in a trap, never in a host
    /// stack overflow.
    pub max_wasm_stack_kb: usize,
    /// Instances the pooling allocator can hold at once.
    pub max_instances: u32,
    /// What compiling one module may take (see `compile`).
    pub compile: compile::CompileLimits,
    /// Compiles in child processes of this executable (the `weir` binary,
    /// which answers `compile-module`); none: in this process.
    #[serde(skip)]
    pub compiler_exe: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: default_cache_dir(),
            max_module_mb: 64,
            max_wasm_stack_kb: 512,
            max_instances: 1_000,
            compile: compile::CompileLimits::default(),
            compiler_exe: None,
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("modules"))
}

/// Time between epoch ticks: the granularity of CPU-time checks. Each tick
/// wakes a thread; 1 ms ticks cost a few % of a core in the pipeline.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Native stack for threads that call into wasm: the wasm stack limit plus
/// generous room for host frames.
pub fn worker_stack_size(config: &EngineConfig) -> usize {
    config.max_wasm_stack_kb * 1024 + (8 << 20)
}

/// Runs `f` on a thread named `name` with such a stack, and waits for it;
/// a panic in it is an error saying `what` panicked.
pub fn on_wasm_thread<T: Send + 'static>(
    config: &EngineConfig,
    name: &str,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(worker_stack_size(config))
        .spawn(f)?
        .join()
        .map_err(|_| anyhow::anyhow!("{what} panicked"))
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    cache: Option<cache::ArtifactCache>,
    config: EngineConfig,
    stop_ticker: Arc<AtomicBool>,
    /// One compilation at a time in this process (when it compiles here):
    /// uploads may come from any tenant, and a Python component takes
    /// seconds of every core.
    compiling: parking_lot::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A validated, compiled transform ready to instantiate.
pub struct Module {
    /// sha256 of the component bytes, hex.
    pub digest: String,
    pub size: usize,
    /// Compilation time, or `None` when the module came from the cache.
    pub compiled_in: Option<Duration>,
    pub(crate) pre: Pre,
    pub(crate) engine: Engine,
}

impl Module {
    /// The world version the component implements.
    pub fn world_version(&self) -> WorldVersion {
        self.pre.version()
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine> {
        let wasm = wasmtime_config(&config, true);
        let engine = wasmtime::Engine::new(&wasm)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;

        let mut linker = Linker::new(&engine);
        bindings::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the weir:transform worlds")?;
        wasi::add_to_linker(&mut linker)?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::ArtifactCache::new(dir, &engine)?),
            None => None,
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), stop_ticker.clone());
        // Cranelift compiles on rayon's threads: at the workers' priority.
        let _ = rayon::ThreadPoolBuilder::new()
            .start_handler(|_| limits::set_thread_nice(10))
            .build_global();
        Ok(Engine {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                config,
                stop_ticker,
                compiling: parking_lot::Mutex::new(()),
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// Validates and compiles a component (or takes it from the cache).
    pub fn load(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        validate::check_header(bytes, self.inner.config.max_module_mb << 20)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let engine = &self.inner.engine;
        let cached = self
            .inner
            .cache
            .as_ref()
            .and_then(|c| c.get(engine, &digest));
        let (component, compiled_in) = match cached {
            Some(c) => (c, None),
            None => {
                let started = Instant::now();
                let c = self.compile(bytes)?;
                (c, Some(started.elapsed()))
            }
        };
        let version = validate::check_world(&component)?;
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            let message = format!("{e:#}");
            match message.find("import") {
                Some(_) => LoadError::UngrantedImport(message),
                None => LoadError::WrongWorld(message),
            }
        })?;
        let pre =
            Pre::new(version, instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        if compiled_in.is_some()
            && let Some(cache) = &self.inner.cache
            && let Err(e) = cache.put(&digest, &component)
        {
            tracing::warn!(error = %format!("{e:#}"), "could not cache the compiled module");
        }
        Ok(Module {
            digest,
            size: bytes.len(),
            compiled_in,
            pre,
            engine: self.clone(),
        })
    }

    /// Compiles a component: in a child process under the compile limits
    /// when the engine has a compiler to run (see `compile`), else here,
    /// one at a time.
    fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        let engine = &self.inner.engine;
        let Some(exe) = &self.inner.config.compiler_exe else {
            let _one_at_a_time = self.inner.compiling.lock();
            return Component::new(engine, bytes).map_err(|e| {
                let message = format!("{e:#}");
                if message.contains("exceeds the configured maximum") {
                    LoadError::Pool(message)
                } else {
                    LoadError::Invalid(message)
                }
            });
        };
        let artifact =
            compile::in_child(exe, &self.inner.config, self.inner.config.compile, bytes)?;
        // SAFETY: the artifact is what our own binary compiled, from an
        // engine of the same settings, read from its stdout (a pipe no one
        // else writes); deserializing checks that it is for this engine.
        unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| {
            // The pool's per-component limits are checked as it loads.
            let message = format!("{e:#}");
            match message.contains("exceeds the configured maximum") {
                true => LoadError::Pool(message),
                false => LoadError::Compiler(format!("loading the compiled module: {message}")),
            }
        })
    }

    /// Deletes what was compiled of module `digest` (it is gone).
    pub fn forget(&self, digest: &str) {
        if let Some(cache) = &self.inner.cache {
            cache.remove(digest);
        }
    }

    /// Reads and loads a component file; errors name the file.
    pub fn load_file(&self, path: &Path) -> Result<Module> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        self.load(&bytes)
            .with_context(|| format!("plugin {}", path.display()))
    }
}

/// What one component may hold of the instance pool; a component that
/// would hold more is refused when it loads.
/// Memories and tables are the pool's average per instance, and core
/// instances (only counted, not reserved) are counted up to the most a
/// component may hold, so every component fits in its instance's part of
/// the pool, and instances, counted in tenants' shares, are all that fills it.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
pub const MAX_TABLES_PER_COMPONENT: u32 = 4;

/// wasmtime's settings for `config`; `pooling` for a host that runs
/// instances (a compiling child has none to allocate, and what it compiles
/// loads in an engine with the pool).
pub fn wasmtime_config(config: &EngineConfig, pooling: bool) -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack_kb * 1024)
        // Weir calls components synchronously; without component-model
        // concurrency a call costs ~170 ns instead of ~510 ns.
        .concurrency_support(false);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(config.max_instances * MAX_MEMORIES_PER_COMPONENT)
            .total_tables(config.max_instances * MAX_TABLES_PER_COMPONENT)
            .total_stacks(config.max_instances)
            .max_memories_per_module(2)
            .max_tables_per_module(4)
            // Per component, so that one tenant's component cannot take the
            // pool's slots by the thousand: Python components (the largest)
            // hold 38 core instances, 1 memory and 2 tables.
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .table_elements(100_000)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            // Reset a freed instance's memory with memset rather than
            // madvise: a tenant whose instances die by the hundred (memory
            // bombs, traps) would otherwise keep the kernel's memory-map
            // lock busy and stall every thread of the host.
            .linear_memory_keep_resident(64 << 20)
            .table_keep_resident(1 << 20);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    wasm
}

fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}
