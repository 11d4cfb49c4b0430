//! What one call may make the host allocate or do on the guest's behalf.
//!
//! The memory limit bounds the guest's own linear memory, the CPU limit the
//! time of the call; neither sees what the host does for the guest: copying
//! output batches out of its memory, keeping state writes and their undo
//! log, window bookkeeping, log lines. Each call (a batch's `process`, the
//! window work and `on-window` that follow it) gets a budget of bytes, the
//! deployment's `memory_mb`, charged before the host allocates or scans on
//! the guest's behalf. Running out fails the call with a `memory` failure,
//! so bisection finds the record that needs that much.
//!
//! Host work that scans (sliding and session windows read a key's points
//! and sessions for each value) also counts against the call's CPU limit:
//! the epoch interrupt only stops wasm, so the host checks the thread's CPU
//! clock between values itself.

use std::time::Duration;

use crate::limits::thread_cpu_time;
use weir_abi::LimitExceeded;
use weir_abi::{CallFailure, FailureKind};

#[derive(Clone, Debug)]
pub struct HostBudget {
    limit: u64,
    used: u64,
    cpu_ms: u64,
    cpu_deadline: Duration,
}

impl HostBudget {
    pub fn new(limit: u64, cpu_ms: u64) -> Self {
        HostBudget {
            limit,
            used: 0,
            cpu_ms,
            cpu_deadline: Duration::MAX,
        }
    }

    /// Starts a new call's accounting.
    pub fn reset(&mut self) {
        self.used = 0;
        self.cpu_deadline = thread_cpu_time() + Duration::from_millis(self.cpu_ms);
    }

    /// Fails the call once it (the guest's calls and the host's work for
    /// them together) has run past its CPU limit since [`reset`](Self::reset).
    pub fn check_cpu(&self) -> Result<(), CallFailure> {
        match thread_cpu_time() > self.cpu_deadline {
            true => Err(CallFailure::new(
                FailureKind::Timeout,
                LimitExceeded::Cpu {
                    limit_ms: self.cpu_ms,
                }
                .to_string(),
            )),
            false => Ok(()),
        }
    }

    /// Accounts for `bytes` more of `what`, or fails when that would exceed
    /// the budget (the count stays at its last good value).
    pub fn charge(&mut self, bytes: u64, what: &str) -> Result<(), CallFailure> {
        self.try_charge(bytes, what)
            .map_err(|e| CallFailure::new(FailureKind::Memory, e.to_string()))
    }

    /// [`charge`](Self::charge) for host functions, which fail the call by
    /// trapping with the limit as the error.
    pub fn try_charge(&mut self, bytes: u64, what: &str) -> Result<(), LimitExceeded> {
        let used = self.used.saturating_add(bytes);
        if used > self.limit {
            return Err(LimitExceeded::HostMemory {
                what: what.to_owned(),
                limit: self.limit,
            });
        }
        self.used = used;
        Ok(())
    }

    /// Bytes left.
    pub fn left(&self) -> u64 {
        self.limit - self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_to_the_limit_and_no_further() {
        let mut b = HostBudget::new(100, 1_000);
        b.charge(60, "a").unwrap();
        let f = b.charge(41, "state writes").unwrap_err();
        assert_eq!(f.kind, FailureKind::Memory);
        assert!(f.message.contains("state writes"), "{}", f.message);
        assert_eq!(b.left(), 40, "a refused charge is not counted");
        b.charge(u64::MAX, "x").unwrap_err();
        b.reset();
        assert_eq!(b.left(), 100);
    }

    #[test]
    fn host_work_past_the_cpu_limit_fails_the_call() {
        let mut b = HostBudget::new(100, 20);
        b.reset();
        b.check_cpu().unwrap();
        let start = thread_cpu_time();
        while thread_cpu_time() - start < Duration::from_millis(30) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert_eq!(b.check_cpu().unwrap_err().kind, FailureKind::Timeout);
    }
}
