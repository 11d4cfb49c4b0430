//! What the world's imports may touch, one capability at a time (in the
//! manner of Spin's factors): each interface is linked with a getter that
//! lends its host functions only their own part of an instance's
//! [`HostState`] and the call's [`HostBudget`], so the code of one
//! capability cannot reach another's data. World bindings implement their
//! version's host traits on these views.

use std::sync::atomic::{AtomicI64, Ordering};

use wasmtime::component::HasData;
use weir_state::PartitionState;
use weir_state::tables::{Found, Tables};
use weir_state::timers::Clock;
use weir_windows::WindowDefs;

use crate::host_state::{HostState, TimerHorizon};
use crate::transform::budget::HostBudget;
use crate::transform::log::{GuestLog, LastError, LogLevel};

/// Guest log lines.
pub struct LogCapability<'a> {
    pub log: &'a GuestLog,
    pub last_error: &'a LastError,
    pub budget: &'a mut HostBudget,
}

/// The keyed state of the partition being processed, if any.
pub struct StateCapability<'a> {
    pub partition: Option<&'a mut PartitionState>,
    pub budget: &'a mut HostBudget,
    /// The wall clock timers see (`None`: the system's).
    pub wall_clock: Option<&'a AtomicI64>,
    pub horizon: &'a mut TimerHorizon,
}

/// The deployment's tables, readable while a partition is processed.
pub struct TablesCapability<'a> {
    pub tables: &'a Tables,
    pub readable: bool,
    pub budget: &'a mut HostBudget,
}

/// The instance's window definitions.
pub struct WindowsCapability<'a> {
    pub defs: &'a mut WindowDefs,
}

/// Markers naming each view for wasmtime's linker.
pub struct Log;
pub struct State;
pub struct Windows;
pub struct TablesView;

impl HasData for Log {
    type Data<'a> = LogCapability<'a>;
}

impl HasData for State {
    type Data<'a> = StateCapability<'a>;
}

impl HasData for Windows {
    type Data<'a> = WindowsCapability<'a>;
}

impl HasData for TablesView {
    type Data<'a> = TablesCapability<'a>;
}

impl HostState {
    pub fn log_capability(&mut self) -> LogCapability<'_> {
        LogCapability {
            log: &self.log,
            last_error: &self.last_error,
            budget: &mut self.budget,
        }
    }

    pub fn state_capability(&mut self) -> StateCapability<'_> {
        StateCapability {
            partition: self.partition.as_deref_mut(),
            budget: &mut self.budget,
            wall_clock: self.wall_clock.as_deref(),
            horizon: &mut self.horizon,
        }
    }

    pub fn tables_capability(&mut self) -> TablesCapability<'_> {
        TablesCapability {
            tables: &self.tables,
            readable: self.partition.is_some(),
            budget: &mut self.budget,
        }
    }

    pub fn windows_capability(&mut self) -> WindowsCapability<'_> {
        WindowsCapability {
            defs: &mut self.windows,
        }
    }
}

// The host functions themselves, shared by every world version (whose
// bindings only convert types).

/// State is reachable only while the host processes a partition's records.
#[derive(Debug, thiserror::Error)]
#[error(
    "state and timers are only available while processing records (in `process`, `on-window` or `on-timer`), not in `init`, `reduce` or `merge`"
)]
struct NoPartition;

/// Charges the call's host budget for `bytes` of `what`.
fn charge(budget: &mut HostBudget, bytes: usize, what: &str) -> wasmtime::Result<()> {
    budget
        .try_charge(bytes as u64, what)
        .map_err(wasmtime::Error::new)
}

/// Host bytes a state entry costs beyond its key and value (map slots, the
/// undo log).
const ENTRY_OVERHEAD: usize = 64;

/// Longest timer key: a timer's key is copied a few times each time it
/// fires, and keys are for naming, not for carrying data.
const MAX_TIMER_KEY: usize = 4096;

impl LogCapability<'_> {
    pub fn write(&mut self, level: LogLevel, message: &str) -> wasmtime::Result<()> {
        charge(
            self.budget,
            message.len().min(crate::transform::log::MAX_LINE_BYTES),
            "log lines",
        )?;
        if level == LogLevel::Error {
            self.last_error.set(message);
        }
        self.log.write(level, message);
        Ok(())
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

impl StateCapability<'_> {
    fn partition(&mut self) -> wasmtime::Result<&mut PartitionState> {
        self.partition
            .as_deref_mut()
            .ok_or_else(|| NoPartition.into())
    }

    /// A scan's `limit`, at most one entry more than the budget could pay
    /// for if each were empty: a guest asking for four billion gets no scan
    /// of the whole store, and a scan the budget cannot pay for fails on
    /// its charge instead of returning a page cut short, which a guest
    /// would take for the end.
    fn entries_affordable(&self, limit: u32) -> u32 {
        limit.min((self.budget.left() / ENTRY_OVERHEAD as u64 + 1).min(u64::from(u32::MAX)) as u32)
    }

    fn charged(&mut self, entries: Entries) -> wasmtime::Result<Entries> {
        let bytes = entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        charge(self.budget, bytes, "state scans")?;
        Ok(entries)
    }

    pub fn get(&mut self, key: &[u8]) -> wasmtime::Result<Option<Vec<u8>>> {
        let value = self
            .partition()?
            .get(key)
            .map_err(wasmtime::Error::from_anyhow)?;
        charge(
            self.budget,
            key.len() + value.as_ref().map_or(0, Vec::len),
            "state reads",
        )?;
        Ok(value)
    }

    pub fn set(&mut self, key: &[u8], value: &[u8], ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        charge(
            self.budget,
            key.len() + value.len() + ENTRY_OVERHEAD,
            "state writes",
        )?;
        let state = self.partition()?;
        state.set(key, value, ttl_ms);
        match state.take_oversize() {
            Some((bytes, limit)) => {
                Err(wasmtime::Error::new(weir_abi::LimitExceeded::StateEntry {
                    bytes,
                    limit,
                }))
            }
            None => Ok(()),
        }
    }

    pub fn delete(&mut self, key: &[u8]) -> wasmtime::Result<()> {
        charge(self.budget, key.len() + ENTRY_OVERHEAD, "state writes")?;
        self.partition()?.delete(key);
        Ok(())
    }

    pub fn range(
        &mut self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
    ) -> wasmtime::Result<Entries> {
        let limit = self.entries_affordable(limit);
        let max_bytes = self.budget.left();
        let entries = self
            .partition()?
            .range(start, end, limit, max_bytes)
            .map_err(wasmtime::Error::from_anyhow)?;
        self.charged(entries)
    }

    pub fn prefix(
        &mut self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> wasmtime::Result<Entries> {
        let limit = self.entries_affordable(limit);
        let max_bytes = self.budget.left();
        let entries = self
            .partition()?
            .prefix(prefix, after, limit, max_bytes)
            .map_err(wasmtime::Error::from_anyhow)?;
        self.charged(entries)
    }

    // Timers are state: a timer costs a state write (two entries) and counts
    // in the state's size and entry limits.

    pub fn set_timer(&mut self, key: &[u8], at: i64, clock: Clock) -> wasmtime::Result<()> {
        charge(self.budget, 2 * (key.len() + ENTRY_OVERHEAD), "timers")?;
        if key.len() > MAX_TIMER_KEY {
            return Err(wasmtime::Error::new(weir_abi::LimitExceeded::StateEntry {
                bytes: key.len() as u64,
                limit: MAX_TIMER_KEY as u64,
            }));
        }
        if clock == Clock::EventTime
            && self
                .horizon
                .between
                .is_some_and(|(after, latest)| after < at && at <= latest)
        {
            self.horizon.crossed = true;
        }
        let state = self.partition()?;
        state
            .set_timer(key, at, clock)
            .map_err(wasmtime::Error::from_anyhow)?;
        match state.take_oversize() {
            Some((bytes, limit)) => {
                Err(wasmtime::Error::new(weir_abi::LimitExceeded::StateEntry {
                    bytes,
                    limit,
                }))
            }
            None => Ok(()),
        }
    }

    pub fn cancel_timer(&mut self, key: &[u8]) -> wasmtime::Result<()> {
        charge(self.budget, 2 * (key.len() + ENTRY_OVERHEAD), "timers")?;
        self.partition()?
            .cancel_timer(key)
            .map_err(wasmtime::Error::from_anyhow)
    }

    pub fn now(&mut self, clock: Clock) -> wasmtime::Result<i64> {
        Ok(match clock {
            Clock::EventTime => self.partition()?.stream_time(),
            Clock::WallClock => self
                .wall_clock
                .map_or(weir_abi::now_ms() as i64, |c| c.load(Ordering::Relaxed)),
        })
    }

    pub fn timer(&mut self, key: &[u8]) -> wasmtime::Result<Option<(i64, Clock)>> {
        charge(self.budget, key.len() + ENTRY_OVERHEAD, "timers")?;
        self.partition()?
            .timer(key)
            .map_err(wasmtime::Error::from_anyhow)
    }
}

/// Tables are deployment-wide, but read only while records are processed,
/// like state: `init` runs before they are loaded.
#[derive(Debug, thiserror::Error)]
#[error(
    "tables can be read only while processing records (in `process`, `on-window` or `on-timer`); `init` may only open them"
)]
struct TablesNotReadable;

impl TablesCapability<'_> {
    pub fn open(&self, name: &str) -> Result<u32, String> {
        self.tables.open(name)
    }

    fn store(&self, id: u32) -> wasmtime::Result<&dyn weir_state::tables::TableRead> {
        if !self.readable {
            return Err(TablesNotReadable.into());
        }
        self.tables.store(id).map_err(wasmtime::Error::from_anyhow)
    }

    pub fn get(&mut self, id: u32, key: &[u8]) -> wasmtime::Result<Option<Vec<u8>>> {
        charge(self.budget, key.len(), "table reads")?;
        let found = self
            .store(id)?
            .get(key, self.budget.left())
            .map_err(wasmtime::Error::from_anyhow)?;
        match found {
            None => Ok(None),
            Some(Found::Value(v)) => {
                charge(self.budget, v.len(), "table reads")?;
                Ok(Some(v))
            }
            // Fails on the budget, uncopied.
            Some(Found::TooLong(len)) => {
                charge(self.budget, len as usize, "table reads").map(|()| None)
            }
        }
    }

    pub fn range(
        &mut self,
        id: u32,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
    ) -> wasmtime::Result<Entries> {
        // One entry more than the budget pays for: a scan that has it fails
        // on the charge below instead of returning a page cut short.
        let limit = u64::from(limit).min(self.budget.left() / ENTRY_OVERHEAD as u64 + 1) as usize;
        let max_bytes = self.budget.left();
        let entries = self
            .store(id)?
            .scan(start, end, limit, max_bytes)
            .map_err(wasmtime::Error::from_anyhow)?;
        let bytes = entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
            .sum();
        charge(self.budget, bytes, "table scans")?;
        Ok(entries)
    }

    pub fn prefix(
        &mut self,
        id: u32,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> wasmtime::Result<Entries> {
        let start = match after {
            // Strictly after `after`: its successor in key order.
            Some(after) if after >= prefix => [after, &[0]].concat(),
            _ => prefix.to_vec(),
        };
        if !start.starts_with(prefix) {
            return Ok(Vec::new());
        }
        self.range(id, &start, weir_state::prefix_end(prefix).as_deref(), limit)
    }
}

impl WindowsCapability<'_> {
    pub fn define(&mut self, name: &str, spec: weir_abi::WindowSpec) -> Result<u32, String> {
        self.defs.define(name, spec)
    }
}
