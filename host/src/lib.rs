//! The `weir` command's own parts: benchmarks (`weir bench`), the embedded
//! quick start (`weir dev`) and plugin templates (`weir new`). The runner
//! itself is `weir-runtime`, the sandbox `weir-engine`.

pub mod bench;
pub mod dev;
pub mod scaffold;
