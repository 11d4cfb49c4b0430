//! Compiling untrusted components outside the host's address space.
//!
//! Cranelift's memory and time grow with what a module asks of it (one
//! function of thousands of locals and tens of thousands of blocks took
//! 16 GB and minutes), which a module size limit does not bound. So a host
//! compiles in a child process of its own binary (`weir compile-module`),
//! under an address-space limit and a CPU-time limit, and kills it at a
//! wall-clock limit: whichever limit is hit, the kill frees everything the
//! compile took, at once, and nothing in the host waits on it but the
//! caller. The child writes the compiled artifact to its stdout; the host
//! loads it as it loads its own artifact cache.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::LoadError;

/// The subcommand of the host's binary that compiles (see [`child_main`]).
pub const SUBCOMMAND: &str = "compile-module";

/// What one compile may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompileLimits {
    /// Address space of the compiling process, MiB.
    pub memory_mb: u64,
    /// CPU time and wall-clock time, seconds.
    pub seconds: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        // Python and JavaScript components (12-18 MB) compile in ~6 s and
        // under 1 GiB here.
        CompileLimits {
            memory_mb: 2048,
            seconds: 120,
        }
    }
}

/// Compiles `bytes` with `exe compile-module`, which builds an engine from
/// `engine` (so its artifacts load into this host's engine) under
/// `limits`; returns the serialized artifact.
pub fn in_child(
    exe: &std::path::Path,
    engine: &crate::EngineConfig,
    limits: CompileLimits,
    bytes: &[u8],
) -> Result<Vec<u8>, LoadError> {
    let config = serde_json::to_string(engine).expect("the engine config serializes");
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // No log lines of the child's own on stderr: it carries the error. No
    // backtrace either: symbolizing one reads the binary's debug info, in a
    // process out of memory.
    // Nothing of the host's environment (it may hold secrets).
    cmd.env_clear()
        .env("WEIR_LOG", "off")
        .env("RUST_BACKTRACE", "0");
    let (memory, cpu) = (
        limits.memory_mb.saturating_mul(1 << 20),
        limits.seconds.max(1),
    );
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls
    // (setrlimit, prctl) on the child's own process.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, value: u64| {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            set(libc::RLIMIT_AS, memory)?;
            // The CPU limit of every compiling thread together; SIGXCPU at
            // the soft limit ends it.
            set(libc::RLIMIT_CPU, cpu)?;
            set(libc::RLIMIT_CORE, 0)?;
            // At the workers' priority, below the host's Kafka threads.
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            // The first the kernel kills when the machine runs out of memory
            // (compiles may run several at once, each under its own limit).
            let adj = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if adj >= 0 {
                libc::write(adj, b"1000".as_ptr().cast(), 4);
                libc::close(adj);
            }
            // Dies with the host.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        // The binary's path is the host's business, not the uploader's.
        tracing::error!("starting the compiler {}: {e}", exe.display());
        LoadError::Compiler(format!("the compiler could not start: {e}"))
    })?;
    let (stdin, mut stdout, mut stderr) = (
        child.stdin.take(),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || {
        // A child that dies early closes the pipe: nothing to report here.
        let _ = stdin.map(|mut s| s.write_all(&input));
    });
    // Both pipes at once: a child blocked writing one would never close
    // the other.
    // What the host takes in is bounded too: native code is ~3 times its
    // wasm (Python components: 17 MB to 47 MB).
    let most = artifact_limit(bytes.len());
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.by_ref().take(most + 1).read_to_end(&mut out)?;
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        Ok::<_, std::io::Error>(out)
    });
    let errors = std::thread::spawn(move || {
        let mut err = Vec::new();
        let _ = stderr.by_ref().take(64 << 10).read_to_end(&mut err);
        // Drain the rest so the child is never blocked on it.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&err).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(limits.seconds.max(1));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(LoadError::Compiler(format!(
                    "waiting for the compiler: {e}"
                )));
            }
        }
    };
    let _ = feeder.join();
    let artifact = reader
        .join()
        .map_err(|_| LoadError::Compiler("reading the compiler's output panicked".into()))?;
    let stderr = errors.join().unwrap_or_default();
    let message = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => Err(LoadError::CompileLimit(format!(
            "it did not compile within {} s",
            limits.seconds
        ))),
        Some(s) if s.success() => match artifact {
            Ok(a) if a.len() as u64 > most => Err(LoadError::CompileLimit(format!(
                "its native code would take more than {} MiB",
                most >> 20
            ))),
            Ok(a) => Ok(a),
            Err(e) => Err(LoadError::Compiler(format!(
                "reading the compiled module: {e}"
            ))),
        },
        // Out of address space, wasmtime's own allocations fail with an error.
        Some(s)
            if s.code() == Some(INVALID_EXIT) && !message.contains("Cannot allocate memory") =>
        {
            Err(LoadError::Invalid(message))
        }
        Some(s) if s.signal() == Some(libc::SIGXCPU) || s.signal() == Some(libc::SIGKILL) => {
            Err(LoadError::CompileLimit(format!(
                "compiling it used more than the {} s of CPU time a compile may",
                limits.seconds
            )))
        }
        // Out of address space, an allocation fails and the process aborts.
        Some(s)
            if s.signal() == Some(libc::SIGABRT)
                || s.code() == Some(INVALID_EXIT)
                || message.contains("memory allocation") =>
        {
            Err(LoadError::CompileLimit(format!(
                "compiling it needed more than the {} MiB a compile may use",
                limits.memory_mb
            )))
        }
        Some(s) => Err(LoadError::Compiler(format!(
            "the compiler failed ({s}): {message}"
        ))),
    }
}

/// The most native code a module of `wasm` bytes may compile to.
fn artifact_limit(wasm: usize) -> u64 {
    (wasm as u64).saturating_mul(8) + (64 << 20)
}

/// Exit status of a child whose module is not a valid component.
const INVALID_EXIT: i32 = 3;

/// The child: reads a component on stdin, writes its compiled artifact to
/// stdout. `config` is the host's [`crate::EngineConfig`] as JSON.
pub fn child_main(config: &str) -> i32 {
    let run = || -> Result<Vec<u8>, (i32, String)> {
        let config: crate::EngineConfig = serde_json::from_str(config)
            .map_err(|e| (1, format!("reading the engine config: {e}")))?;
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| (1, format!("reading the module: {e}")))?;
        let engine = wasmtime::Engine::new(&crate::wasmtime_config(&config, false))
            .map_err(|e| (1, format!("configuring wasmtime: {e:#}")))?;
        engine
            .precompile_component(&bytes)
            .map_err(|e| (INVALID_EXIT, format!("{e:#}").replace('\n', " ")))
    };
    match run() {
        Ok(artifact) => match std::io::stdout()
            .write_all(&artifact)
            .and_then(|()| std::io::stdout().flush())
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the compiled module: {e}");
                1
            }
        },
        Err((code, message)) => {
            eprintln!("{message}");
            code
        }
    }
}
