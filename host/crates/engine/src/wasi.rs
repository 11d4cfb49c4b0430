//! The WASI 0.2 a transform may import: what language runtimes need and
//! nothing that reaches outside or waits.
//!
//! Granted: `wasi:cli` (no arguments or environment, empty stdin, stdout and
//! stderr to the deployment's log, exit), `wasi:clocks` (the wall clock
//! frozen at the Unix epoch), `wasi:random` (from a fixed seed, so a replay
//! behaves the same), `wasi:io` and `wasi:filesystem` (no preopened
//! directories, so no file can be opened). Not granted: `wasi:sockets`,
//! `wasi:http`; a component importing them is refused when it is loaded.
//!
//! Nothing here blocks. A blocked host call burns no CPU time, so the CPU
//! limit (epoch checks in wasm) could never end it, and it would hold a
//! worker every deployment shares. Each instance has a monotonic clock of
//! its own that starts at zero and moves only when the transform sleeps: a
//! subscription is ready at once and advances the clock to its deadline. A
//! transform that sleeps an hour returns at once, one that sleeps in a loop
//! spins in wasm until its CPU limit stops it.

use std::time::Duration;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};

use crate::host_state::HostState;
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

const SEED: u64 = 0x5745_4952;

/// The WASI context of one instance.
pub fn deny_all(stdout: GuestLogStream, stderr: GuestLogStream) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(stdout)
        .stderr(stderr)
        .wall_clock(FrozenClock)
        .secure_random(StdRng::seed_from_u64(SEED))
        .insecure_random(StdRng::seed_from_u64(SEED))
        .insecure_random_seed(SEED as u128)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Adds the granted interfaces to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    add(linker)
        .map_err(anyhow::Error::from)
        .context("linking the granted WASI interfaces")
}

fn add(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCli;
    use wasmtime_wasi::clocks::WasiClocks;
    use wasmtime_wasi::filesystem::WasiFilesystem;
    use wasmtime_wasi::random::WasiRandom;
    type S = HostState;
    clocks::wall_clock::add_to_linker::<S, WasiClocks>(
        l,
        <S as wasmtime_wasi::clocks::WasiClocksView>::clocks,
    )?;
    monotonic_clock::add_to_linker::<S, VirtualTime>(l, |s| VirtualClock {
        now: &mut s.wasi_now,
        table: &mut s.table,
    })?;
    random::random::add_to_linker::<S, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure::add_to_linker::<S, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<S, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    let cli = <S as wasmtime_wasi::cli::WasiCliView>::cli;
    cli::exit::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::environment::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::stdin::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::stdout::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::stderr::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::terminal_input::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::terminal_output::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::terminal_stdin::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::terminal_stdout::add_to_linker::<S, WasiCli>(l, cli)?;
    cli::terminal_stderr::add_to_linker::<S, WasiCli>(l, cli)?;
    let fs = <S as wasmtime_wasi::filesystem::WasiFilesystemView>::filesystem;
    filesystem::preopens::add_to_linker::<S, WasiFilesystem>(l, fs)?;
    sync::filesystem::types::add_to_linker::<S, WasiFilesystem>(l, fs)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<S, Table>(l, |s| &mut s.table)?;
    sync::io::poll::add_to_linker::<S, Table>(l, |s| &mut s.table)?;
    sync::io::streams::add_to_linker::<S, Table>(l, |s| &mut s.table)?;
    Ok(())
}

struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

struct VirtualTime;

impl HasData for VirtualTime {
    type Data<'a> = VirtualClock<'a>;
}

/// An instance's monotonic clock, in nanoseconds since it was created.
pub struct VirtualClock<'a> {
    now: &'a mut u64,
    table: &'a mut ResourceTable,
}

impl VirtualClock<'_> {
    /// A subscription that is ready at once: the clock jumps to `until`.
    fn wake_at(&mut self, until: u64) -> wasmtime::Result<Resource<DynPollable>> {
        *self.now = (*self.now).max(until);
        let ready = self.table.push(Ready)?;
        subscribe(self.table, ready)
    }
}

impl monotonic_clock::Host for VirtualClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(*self.now)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.wake_at(when)
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let until = self.now.saturating_add(duration);
        self.wake_at(until)
    }
}

struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}
