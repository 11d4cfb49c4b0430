//! Enforcing a deployment's [`Limits`] on wasmtime: memory and tables per
//! store, the CPU clock of the calling thread, and thread priorities.

pub use weir_abi::{LimitExceeded, Limits, record_size};

/// Enforces the memory and table limits of one store; remembers the breach
/// so the trap it causes can be reported as what it is.
pub struct Limiter {
    memory_limit: u64,
    /// Bytes of linear memory the instance holds, over all its memories.
    pub(crate) memory_used: u64,
    pub(crate) breach: Option<LimitExceeded>,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            memory_limit: limits.memory_bytes(),
            memory_used: 0,
            breach: None,
        }
    }
}

const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = self.memory_used + (desired - current) as u64;
        if requested > self.memory_limit {
            let breach = LimitExceeded::Memory {
                requested,
                limit: self.memory_limit,
            };
            self.breach = Some(breach.clone());
            return Err(breach.into());
        }
        self.memory_used = requested;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let breach = LimitExceeded::Table {
                requested: desired as u64,
                limit: MAX_TABLE_ELEMENTS as u64,
            };
            self.breach = Some(breach.clone());
            return Err(breach.into());
        }
        Ok(true)
    }
}

/// Sets the calling thread's nice value: guest code and compiles run at 10,
/// so that under contention the kernel gives the host's own threads
/// (moving records, serving the API) about ten times their CPU.
pub fn set_thread_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on
    // every platform Weir supports (Linux, macOS).
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
