//! Log lines, recorded by the host with the deployment's name.
//!
//! ```no_run
//! let words = 3;
//! weir_sdk::log::info(format_args!("counted {words} words"));
//! ```

use std::fmt::Display;

pub use crate::bindings::weir::transform::log::Level;
use crate::bindings::weir::transform::log::log;

pub fn trace(message: impl Display) {
    log(Level::Trace, &message.to_string());
}

pub fn debug(message: impl Display) {
    log(Level::Debug, &message.to_string());
}

pub fn info(message: impl Display) {
    log(Level::Info, &message.to_string());
}

pub fn warn(message: impl Display) {
    log(Level::Warn, &message.to_string());
}

pub fn error(message: impl Display) {
    log(Level::Error, &message.to_string());
}
