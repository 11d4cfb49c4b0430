//! Firing a transform's due timers: taken from the partition's state and
//! handed to `on-timer` in one transaction, so a timer fires once with
//! respect to state (a failed call puts it back).
//!
//! A call that fails as a whole is retried one timer at a time on fresh
//! instances; a timer that fails alone is dropped and reported (no record
//! stands behind it to dead-letter or stop at). Work is bounded: at most
//! [`PER_CALL`] timers per call, an [`Allowance`] of calls and CPU time per
//! firing given by the caller (timers set for a time already passed during
//! a firing fire in the next call), and at most [`MAX_CULPRITS`] failing
//! timers isolated per firing; the rest stay set for the next one.

use weir_abi::{CallFailure, FailureKind};
use weir_state::PartitionState;
use weir_state::timers::{Clock, Timer};

use super::batch::{self, Origin};
use super::dispatch::Transform;
use super::{Produced, TransformSpec};
use crate::limits::thread_cpu_time;

const PER_CALL: usize = 1000;
const MAX_CULPRITS: usize = 8;

/// A timer whose `on-timer` call failed; it was dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct TimerFailure {
    pub key: Vec<u8>,
    pub at: i64,
    pub clock: Clock,
    pub failure: CallFailure,
}

impl TimerFailure {
    /// The failure with the timer that caused it, for operators.
    pub fn describe(&self, deployment: &str, partition: i32) -> String {
        let key = String::from_utf8_lossy(&self.key[..self.key.len().min(64)]).into_owned();
        format!(
            "deployment `{deployment}`, partition {partition}: the {} timer of key {key:?} at {} was dropped: {}: {}",
            match self.clock {
                Clock::EventTime => "event-time",
                Clock::WallClock => "wall-clock",
            },
            self.at,
            self.failure.kind,
            self.failure.message
        )
    }
}

/// What firing timers produced.
#[derive(Default)]
pub struct Fired {
    pub produced: Vec<Produced>,
    pub failures: Vec<TimerFailure>,
    /// A failure of the host (storage) that stopped the firing; the timers
    /// stay set.
    pub host_failure: Option<CallFailure>,
}

/// How much `on-timer` work one firing may do: calls, and CPU time of the
/// worker thread. A guest whose timers set themselves due again forever, or
/// keep failing, uses up its allowance and the rest waits for the next
/// firing; a worker is never held longer than that.
pub struct Allowance {
    calls: usize,
    cpu_ms: u64,
    /// Set when first needed: reading the thread's CPU time is a system call.
    cpu_deadline: Option<std::time::Duration>,
}

impl Allowance {
    /// `calls` calls and `cpu_ms` ms of the thread's CPU from the first use.
    pub fn new(calls: usize, cpu_ms: u64) -> Self {
        Allowance {
            calls,
            cpu_ms,
            cpu_deadline: None,
        }
    }

    /// Whether CPU time is left.
    pub fn cpu_left(&mut self) -> bool {
        let now = thread_cpu_time();
        now <= *self
            .cpu_deadline
            .get_or_insert(now + std::time::Duration::from_millis(self.cpu_ms))
    }

    fn take_call(&mut self) -> bool {
        if self.calls == 0 || !self.cpu_left() {
            return false;
        }
        self.calls -= 1;
        true
    }
}

impl Transform {
    /// Fires the timers of `clock` due at `now` on this partition, within
    /// `allowance`. A 0.1 transform fires none: it cannot have set any, and
    /// timers a newer version left in its state wait for a newer one.
    pub fn fire_timers(
        &mut self,
        clock: Clock,
        now: i64,
        slot: &mut Option<Box<PartitionState>>,
        fired: &mut Fired,
        allowance: &mut Allowance,
    ) {
        if !self.module_has_timers()
            || !slot
                .as_ref()
                .expect("state present")
                .may_have_due_timers(clock, now)
        {
            return;
        }
        // The keys taken are copied a few times over (scan, call, undo log):
        // take no more than a fraction of what a call may hold.
        let max_bytes = self.spec().limits.host_bytes_per_call() / 8;
        let mut culprits = 0;
        while fired.host_failure.is_none() && allowance.take_call() {
            let state = slot.as_mut().expect("state present");
            let state_before = match self
                .spec()
                .limits
                .max_state_bytes
                .map(|_| state.try_state_bytes())
            {
                Some(Err(e)) => {
                    fired.host_failure = Some(CallFailure::host(e));
                    return;
                }
                Some(Ok(bytes)) => Some(bytes),
                None => None,
            };
            state.begin();
            let due = match state.take_due_timers(clock, now, PER_CALL, max_bytes) {
                Ok(due) => due,
                Err(e) => {
                    state.rollback();
                    fired.host_failure = Some(CallFailure::host(e));
                    return;
                }
            };
            if due.is_empty() {
                state.rollback();
                return;
            }
            match self.call_timers(&due, slot, state_before) {
                Ok(produced) => {
                    slot.as_mut().expect("state present").commit_txn();
                    fired.produced.push(produced);
                }
                Err(failure) => {
                    slot.as_mut().expect("state present").rollback();
                    self.discard_instance();
                    // No room to run: the timers stay, due, for the next try.
                    if failure.kind == FailureKind::Unavailable {
                        return;
                    }
                    if failure.kind == FailureKind::Host {
                        fired.host_failure = Some(failure);
                        return;
                    }
                    for t in due {
                        if culprits >= MAX_CULPRITS
                            || fired.host_failure.is_some()
                            || !allowance.take_call()
                        {
                            return;
                        }
                        match self.fire_alone(t, slot, fired) {
                            Alone::Fired => {}
                            Alone::Failed => culprits += 1,
                            Alone::NoRoom => return,
                        }
                    }
                }
            }
        }
    }

    /// Fires one timer of a failed group, unless a timer fired before it
    /// cancelled or moved it.
    fn fire_alone(
        &mut self,
        t: Timer,
        slot: &mut Option<Box<PartitionState>>,
        fired: &mut Fired,
    ) -> Alone {
        let state = slot.as_mut().expect("state present");
        match state.timer(&t.key) {
            Ok(current) if current == Some((t.at, t.clock)) => {}
            Ok(_) => return Alone::Fired,
            Err(e) => {
                fired.host_failure = Some(CallFailure::host(e));
                return Alone::Fired;
            }
        }
        let state_before = match self
            .spec()
            .limits
            .max_state_bytes
            .map(|_| state.try_state_bytes())
        {
            Some(Err(e)) => {
                fired.host_failure = Some(CallFailure::host(e));
                return Alone::Fired;
            }
            Some(Ok(bytes)) => Some(bytes),
            None => None,
        };
        state.begin();
        if let Err(e) = state.cancel_timer(&t.key) {
            state.rollback();
            fired.host_failure = Some(CallFailure::host(e));
            return Alone::Fired;
        }
        match self.call_timers(std::slice::from_ref(&t), slot, state_before) {
            Ok(produced) => {
                slot.as_mut().expect("state present").commit_txn();
                fired.produced.push(produced);
                Alone::Fired
            }
            Err(failure) => {
                self.discard_instance();
                let state = slot.as_mut().expect("state present");
                state.rollback();
                if failure.kind == FailureKind::Unavailable {
                    // No room to run: it stays set, due, for the next try.
                    return Alone::NoRoom;
                }
                if failure.kind == FailureKind::Host {
                    // Not the timer's fault: it stays set.
                    fired.host_failure = Some(failure);
                    return Alone::Fired;
                }
                state.begin();
                let dropped = state.cancel_timer(&t.key);
                state.commit_txn();
                match dropped {
                    Ok(()) => fired.failures.push(TimerFailure {
                        key: t.key,
                        at: t.at,
                        clock: t.clock,
                        failure,
                    }),
                    Err(e) => fired.host_failure = Some(CallFailure::host(e)),
                }
                Alone::Failed
            }
        }
    }

    /// One `on-timer` call over `due`, its outputs checked; `state_before`
    /// is the state's size before the timers were taken, when it is limited.
    fn call_timers(
        &mut self,
        due: &[Timer],
        slot: &mut Option<Box<PartitionState>>,
        state_before: Option<u64>,
    ) -> Result<Produced, CallFailure> {
        let spec: std::sync::Arc<TransformSpec> = self.spec().clone();
        let inst = self.instance()?;
        inst.begin_budget();
        inst.budget().charge(
            due.iter().map(|t| t.key.len() as u64 + 32).sum(),
            "fired timers",
        )?;
        let out = inst
            .on_timer(due, slot)?
            .map_err(|m| CallFailure::new(FailureKind::Fatal, m))?;
        let failed = batch::check(&out, due.len(), &spec, inst.budget())?;
        let (out, failed) = batch::encode(out, failed, &spec, inst.budget())?;
        if !out.window_adds.is_empty() {
            return Err(CallFailure::new(
                FailureKind::InvalidOutput,
                "on-timer returned window values".to_owned(),
            ));
        }
        if let Some((_, (kind, message))) = failed.iter().next() {
            return Err(CallFailure::new(*kind, format!("on-timer: {message}")));
        }
        let state = slot.as_mut().expect("state present");
        if let Some((bytes, limit)) = state.take_oversize() {
            return Err(CallFailure::new(
                FailureKind::StateLimit,
                weir_abi::LimitExceeded::StateEntry { bytes, limit }.to_string(),
            ));
        }
        if let (Some(limit), Some(before)) = (spec.limits.max_state_bytes, state_before) {
            super::dispatch::check_state_size(state, before, limit)?;
        }
        let origins = due
            .iter()
            .map(|t| Origin {
                input: None,
                timestamp: t.at,
            })
            .collect();
        Ok(Produced {
            batch: out,
            origins,
        })
    }
}

/// How a timer fired alone went.
enum Alone {
    /// It fired, or no longer needed to, or the host failed (its timer
    /// stays set; see `Fired::host_failure`).
    Fired,
    /// It failed, and was dropped.
    Failed,
    /// No room to run the transform: it stays set, and so do the rest.
    NoRoom,
}
