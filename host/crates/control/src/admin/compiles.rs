//! Admission of the work an API call starts off the request path
//! (compiling a module, running a deployment's `init`): one call at a time
//! per caller, and a few in all. A timed-out request stops waiting but its
//! compile runs on, so without this a caller could queue compiles faster
//! than they finish and keep every other tenant's uploads waiting.

use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Compiles running or waiting for the engine, from every caller.
pub const MAX_IN_FLIGHT: usize = 4;

#[derive(Default)]
pub struct Compiles {
    /// Callers (a tenant, or `None` for the operator) with one in flight.
    callers: Mutex<BTreeSet<Option<String>>>,
}

/// A caller's place, given back when the work it was taken for ends (not
/// when the request does).
pub struct Ticket {
    compiles: Arc<Compiles>,
    caller: Option<String>,
}

impl Compiles {
    /// A place for `caller`'s work, or why there is none now.
    pub fn admit(self: &Arc<Self>, caller: Option<&str>) -> Result<Ticket, String> {
        let mut callers = self.callers.lock();
        let caller = caller.map(str::to_owned);
        if callers.contains(&caller) {
            return Err(
                "a compile or check of yours is still running: retry when it is done".into(),
            );
        }
        if callers.len() >= MAX_IN_FLIGHT {
            return Err(format!(
                "{MAX_IN_FLIGHT} compiles are running or waiting: retry shortly"
            ));
        }
        callers.insert(caller.clone());
        Ok(Ticket {
            compiles: self.clone(),
            caller,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.compiles.callers.lock().remove(&self.caller);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_caller_and_a_few_in_all() {
        let c = Arc::new(Compiles::default());
        let acme = c.admit(Some("acme")).unwrap();
        assert!(c.admit(Some("acme")).is_err(), "one at a time per caller");
        let others: Vec<Ticket> = ["a", "b", "c"]
            .iter()
            .map(|t| c.admit(Some(t)).unwrap())
            .collect();
        assert!(c.admit(None).err().unwrap().contains("running or waiting"));
        drop(acme);
        c.admit(Some("acme"))
            .expect("given back when the work ends");
        drop(others);
    }
}
