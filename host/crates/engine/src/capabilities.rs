//! What the world's imports may touch, one capability at a time (in the
//! manner of Spin's factors): each interface is linked with a getter that
//! lends its host functions only their own part of an instance's
//! [`HostState`] and the call's [`HostBudget`], so the code of one
//! capability cannot reach another's data. World bindings implement their
//! version's host traits on these views.

use wasmtime::component::HasData;
use weir_state::PartitionState;
use weir_windows::WindowDefs;

use crate::transform::budget::HostBudget;
use crate::transform::instance::HostState;
use crate::transform::log::{GuestLog, LastError};

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
}

/// The instance's window definitions.
pub struct WindowsCapability<'a> {
    pub defs: &'a mut WindowDefs,
}

/// Markers naming each view for wasmtime's linker.
pub struct Log;
pub struct State;
pub struct Windows;

impl HasData for Log {
    type Data<'a> = LogCapability<'a>;
}

impl HasData for State {
    type Data<'a> = StateCapability<'a>;
}

impl HasData for Windows {
    type Data<'a> = WindowsCapability<'a>;
}

impl HostState {
    pub fn log_capability(&mut self) -> LogCapability<'_> {
        LogCapability { log: &self.log, last_error: &self.last_error, budget: &mut self.budget }
    }

    pub fn state_capability(&mut self) -> StateCapability<'_> {
        StateCapability { partition: self.partition.as_deref_mut(), budget: &mut self.budget }
    }

    pub fn windows_capability(&mut self) -> WindowsCapability<'_> {
        WindowsCapability { defs: &mut self.windows }
    }
}
