//! CPU spent during a benchmark's phase: by this process (all its threads,
//! librdkafka's included) and by the whole machine (the broker included).
//! On a machine whose cores the broker shares, CPU per record is a steadier
//! figure than records/s, which moves with whatever else runs.

use std::time::Instant;

/// The kernel's clock ticks per second in `/proc` (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds at one moment; none where `/proc` does not say.
#[derive(Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    process: Option<f64>,
    machine_busy: Option<f64>,
}

/// What a phase between two marks used.
pub struct CpuUse {
    /// CPU seconds of this process.
    pub process_secs: Option<f64>,
    /// CPU seconds of every core not idle (this process, the broker and the
    /// rest of the machine).
    pub machine_secs: Option<f64>,
    pub wall_secs: f64,
}

impl CpuMark {
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            process: process_secs(),
            machine_busy: machine_busy_secs(),
        }
    }

    /// What was used since this mark.
    pub fn used(&self) -> CpuUse {
        let now = Self::now();
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        CpuUse {
            process_secs: diff(self.process, now.process),
            machine_secs: diff(self.machine_busy, now.machine_busy),
            wall_secs: now.at.duration_since(self.at).as_secs_f64(),
        }
    }
}

impl CpuUse {
    /// This process's CPU µs per record, over `records`.
    pub fn process_us_per(&self, records: usize) -> Option<f64> {
        Some(self.process_secs? * 1e6 / records as f64)
    }

    /// The machine's busy CPU µs per record, over `records`.
    pub fn machine_us_per(&self, records: usize) -> Option<f64> {
        Some(self.machine_secs? * 1e6 / records as f64)
    }
}

/// utime + stime of this process, from `/proc/self/stat`.
fn process_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SEC)
}

/// Busy time of every core, from `/proc/stat`'s `cpu` line: all but idle
/// and iowait.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let all: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle) / TICKS_PER_SEC)
}
