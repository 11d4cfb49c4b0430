//! Write [Weir](https://github.com/weir-streams/weir) stream transforms in Rust.
//!
//! A transform is a type implementing [`Transform`] (or a plain function),
//! exported with [`export!`] and compiled for `wasm32-wasip2`:
//!
//! ```no_run
//! use weir_sdk::{Config, Emitter, Error, Output, Record, Transform};
//!
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!
//!     fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         let value = record.value().unwrap_or_default().to_ascii_uppercase();
//!         out.emit(Output::new().key_opt(record.key()).value(&value));
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export!(Upper);
//! ```
//!
//! A stateless transform can be a function:
//!
//! ```no_run
//! use weir_sdk::{Emitter, Error, Output, Record};
//!
//! fn drop_empty(record: &Record<'_>, out: &mut Emitter) -> Result<(), Error> {
//!     if record.value().is_some_and(|v| !v.is_empty()) {
//!         out.forward(record);
//!     }
//!     Ok(())
//! }
//!
//! weir_sdk::export!(fn drop_empty);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and try it with
//! `weir test target/wasm32-wasip2/release/NAME.wasm --input records.jsonl`.
//!
//! The SDK hides the columnar batches of the WIT world
//! `weir:transform/plugin@0.2.1`: each [`Record`] reads its fields from the
//! batch's packed metadata and borrows its bytes, and [`Emitter`] appends
//! outputs to the batch returned to the host, so a record costs no
//! allocation on either side of the sandbox.

extern crate self as weir_sdk;

mod config;
mod emit;
mod error;
#[doc(hidden)]
pub mod export;
pub mod log;
mod record;
pub mod state;
pub mod tables;
pub mod timers;
pub mod windows;

pub use config::Config;
pub use emit::{Emitter, Output};
pub use error::Error;
pub use record::{Headers, Record};
pub use tables::Table;
pub use timers::{Clock, Timer};
pub use windows::{Window, WindowResult, WindowSpec};

/// Generated bindings for `weir:transform/plugin@0.2.1`; the SDK's own types
/// wrap them, so plugins should not need this module.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/0.2",
        world: "weir:transform/plugin@0.2.1",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "weir_sdk::bindings",
    });
}

/// What a transform does with records.
///
/// The host creates one value of this type per sandbox instance (with
/// [`Transform::init`]) and calls [`Transform::process`] for each record,
/// in offset order within a partition. Records of different partitions may
/// be processed by different instances, so keep per-key facts in
/// [`state`], not in fields.
pub trait Transform: Sized + 'static {
    /// Builds the transform from the deployment's configuration. Windowed
    /// transforms declare their windows here. An error stops the deployment.
    fn init(config: &Config) -> Result<Self, String>;

    /// Handles one record: emit any number of outputs, read and write state,
    /// add values to windows. Returning an error rejects the record: its
    /// outputs, window additions and state changes are discarded and the
    /// deployment's failure policy applies ([`Error::fatal`] stops the
    /// deployment instead).
    fn process(&mut self, record: &Record<'_>, out: &mut Emitter) -> Result<(), Error>;

    /// Turns a window result into outputs. The default emits nothing.
    fn on_window(&mut self, result: &WindowResult<'_>, out: &mut Emitter) -> Result<(), Error> {
        let _ = (result, out);
        Ok(())
    }

    /// Handles a timer set with [`timers::set`] that fired: emit outputs,
    /// read and write state, set timers. Timers fire in time, then key
    /// order. Returning an error (or panicking) drops the timer and counts a
    /// failure. The default emits nothing.
    fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter) -> Result<(), Error> {
        let _ = (timer, out);
        Ok(())
    }

    /// Folds `values` into the accumulator of a custom window aggregation
    /// (`acc` is `None` for a new window). Required by transforms that
    /// define [`windows::Aggregation::Custom`] windows.
    fn reduce(
        &mut self,
        window: Window,
        key: &[u8],
        acc: Option<Vec<u8>>,
        values: Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let _ = (key, acc, values);
        panic!(
            "window {window:?} uses a custom aggregation but the transform does not implement `reduce`"
        )
    }

    /// Combines the accumulators of two merging session windows (`a` is the
    /// earlier one). Required for custom session aggregations.
    fn merge(&mut self, window: Window, key: &[u8], a: Vec<u8>, b: Vec<u8>) -> Vec<u8> {
        let _ = (key, a, b);
        panic!(
            "window {window:?} uses a custom session aggregation but the transform does not implement `merge`"
        )
    }
}

/// Exports a transform from the plugin crate: either a type implementing
/// [`Transform`], or `fn name` for a function `fn(&Record, &mut Emitter) ->
/// Result<(), Error>`. Use it once per plugin.
#[macro_export]
macro_rules! export {
    (fn $f:path) => {
        struct __WeirFnTransform;
        impl $crate::Transform for __WeirFnTransform {
            fn init(_config: &$crate::Config) -> ::core::result::Result<Self, ::std::string::String> {
                ::core::result::Result::Ok(__WeirFnTransform)
            }
            fn process(
                &mut self,
                record: &$crate::Record<'_>,
                out: &mut $crate::Emitter,
            ) -> ::core::result::Result<(), $crate::Error> {
                $f(record, out)
            }
        }
        $crate::export!(__WeirFnTransform);
    };
    ($t:ty) => {
        struct __WeirExport;
        impl $crate::bindings::exports::weir::transform::handler::Guest for __WeirExport {
            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::core::result::Result<(), ::std::string::String> {
                $crate::export::init::<$t>(config)
            }
            fn process(batch: $crate::export::InputBatch) -> ::core::result::Result<$crate::export::OutputBatch, ::std::string::String> {
                $crate::export::process::<$t>(batch)
            }
            fn on_window(batch: $crate::export::WindowBatch) -> ::core::result::Result<$crate::export::OutputBatch, ::std::string::String> {
                $crate::export::on_window::<$t>(batch)
            }
            fn on_timer(batch: $crate::export::TimerBatch) -> ::core::result::Result<$crate::export::OutputBatch, ::std::string::String> {
                $crate::export::on_timer::<$t>(batch)
            }
            fn reduce(window: u32, key: ::std::vec::Vec<u8>, acc: ::core::option::Option<::std::vec::Vec<u8>>, values: ::std::vec::Vec<::std::vec::Vec<u8>>) -> ::std::vec::Vec<u8> {
                $crate::export::reduce::<$t>(window, key, acc, values)
            }
            fn merge(window: u32, key: ::std::vec::Vec<u8>, a: ::std::vec::Vec<u8>, b: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                $crate::export::merge::<$t>(window, key, a, b)
            }
        }
        $crate::bindings::__export_plugin!(__WeirExport with_types_in $crate::bindings);
    };
}
