//! What is wrong with a file that is not a loadable transform, said in one
//! line.

use wasmtime::component::Component;

use crate::bindings::WorldVersion;

/// The WIT world new transforms implement (older ones keep loading).
pub const WORLD: &str = WorldVersion::NEWEST.world();
/// The interface it exports.
pub const HANDLER_EXPORT: &str = WorldVersion::NEWEST.handler_export();

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("empty file: a transform is a WebAssembly component")]
    Empty,
    #[error("{size} bytes is larger than the {limit}-byte module size limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a WebAssembly file: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build Rust plugins with the weir plugin template \
         (wasm32-unknown-unknown linked by wasm-component-ld) or wrap the module with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("invalid WebAssembly component: {0}")]
    Invalid(String),
    /// Compiling it went past a limit (see `compile`).
    #[error("refused: {0}")]
    CompileLimit(String),
    /// The compiler itself failed (not the module's doing).
    #[error("compiling failed: {0}")]
    Compiler(String),
    /// It would hold more of the host's instance pool than one component may.
    #[error("refused: {0}")]
    Pool(String),
    #[error(
        "does not implement the world {WORLD}: it does not export `{HANDLER_EXPORT}`, nor an earlier version's handler (it exports: {found})"
    )]
    MissingExport { found: String },
    #[error("does not implement the world {WORLD}: {0}")]
    WrongWorld(String),
    #[error(
        "imports `{0}`, which Weir does not grant: a transform may import weir:transform/* and WASI 0.2 cli, clocks, random, io \
         and filesystem (served deny-all; no sockets or HTTP)"
    )]
    UngrantedImport(String),
}

/// Checks the preamble before handing bytes to the compiler, so that common
/// mistakes get a plain answer rather than a parser error.
pub fn check_header(bytes: &[u8], max_bytes: u64) -> Result<(), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if bytes.len() as u64 > max_bytes {
        return Err(LoadError::TooLarge {
            size: bytes.len() as u64,
            limit: max_bytes,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        0 => Err(LoadError::CoreModule),
        1 => Ok(()),
        layer => Err(LoadError::Invalid(format!(
            "unknown WebAssembly layer {layer}"
        ))),
    }
}

/// Checks that the component exports a handler and imports only granted
/// namespaces, and says which world version it implements; signature
/// mismatches are caught when it is linked.
pub fn check_world(component: &Component) -> Result<WorldVersion, LoadError> {
    let engine = component.engine();
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let granted = [
            "weir:transform/",
            "wasi:cli/",
            "wasi:clocks/",
            "wasi:random/",
            "wasi:io/",
            "wasi:filesystem/",
        ]
        .iter()
        .any(|p| name.starts_with(p));
        if !granted {
            return Err(LoadError::UngrantedImport(name.to_owned()));
        }
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    WorldVersion::exported_by(exports.iter().map(String::as_str)).ok_or_else(|| {
        let found = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        };
        LoadError::MissingExport { found }
    })
}
