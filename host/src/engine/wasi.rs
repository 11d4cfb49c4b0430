//! Deny-all WASI for language runtimes that import it (Python, JavaScript):
//! no preopened directories, no sockets or name lookups, no environment or
//! arguments, empty stdin, clocks frozen at the Unix epoch and randomness
//! from a fixed seed, so a transform behaves the same on every replay.
//! Standard output and error go to the deployment's log.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::transform::log::GuestLogStream;

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

const SEED: u64 = 0x5745_4952;

pub fn deny_all(stdout: GuestLogStream, stderr: GuestLogStream) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(stdout)
        .stderr(stderr)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(StdRng::seed_from_u64(SEED))
        .insecure_random(StdRng::seed_from_u64(SEED))
        .insecure_random_seed(SEED as u128)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}
