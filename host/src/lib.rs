//! The `weir` command's own parts: benchmarks (`weir bench`), the embedded
//! quick start (`weir dev`) and plugin templates (`weir new`). The runner
//! itself is `weir-runtime`, the sandbox `weir-engine`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod dev;
pub mod scaffold;
