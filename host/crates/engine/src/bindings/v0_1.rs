//! Bindings for `weir:transform/plugin@0.1.0`.

wasmtime::component::bindgen!({
    path: "../../../wit/0.1",
    world: "weir:transform/plugin@0.1.0",
    // State calls may fail on the host side (storage errors, quotas); they
    // trap the guest rather than hand it an error it could ignore.
    imports: { default: trappable },
    // Batches the host passes in are borrowed, not copied.
    ownership: Borrowing { duplicate_if_necessary: true },
});

use self::weir::transform::{log, state, types, windows};

use wasmtime::component::Linker;
use weir_abi as abi;

use crate::capabilities::{self, LogCapability, StateCapability, WindowsCapability};
use crate::host_state::HostState;
use crate::transform::log::LogLevel;

/// Links the world's imports, each capability with its own view.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, capabilities::Log>(linker, HostState::log_capability)?;
    state::add_to_linker::<HostState, capabilities::State>(linker, HostState::state_capability)?;
    windows::add_to_linker::<HostState, capabilities::Windows>(
        linker,
        HostState::windows_capability,
    )?;
    Ok(())
}

super::since_0_1::same_since_0_1!();

// Conversions to and from the host's types. Records are small structs of
// spans, copied field by field; the data buffers are borrowed going in and
// moved coming out, never copied.

fn header(h: &abi::Header) -> types::Header {
    types::Header {
        name: span(h.name),
        value: h.value.map(span),
    }
}

fn from_header(h: types::Header) -> abi::Header {
    abi::Header {
        name: from_span(h.name),
        value: h.value.map(from_span),
    }
}

/// Space for the record and header lists of batches passed to the guest,
/// kept by an instance so a call allocates nothing.
#[derive(Default)]
pub struct Scratch {
    records: Vec<types::InputRecord>,
    headers: Vec<types::Header>,
    results: Vec<windows::WindowResult>,
}

impl Scratch {
    pub fn input<'a>(&'a mut self, b: &'a abi::InputBatch) -> types::InputBatch<'a> {
        self.records.clear();
        self.records
            .extend(b.records.iter().map(|r| types::InputRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(span),
                value: r.value.map(span),
                headers: span(r.headers),
            }));
        self.headers.clear();
        self.headers.extend(b.headers.iter().map(header));
        types::InputBatch {
            topic: &b.topic,
            partition: b.partition,
            data: &b.data,
            records: &self.records,
            headers: &self.headers,
        }
    }

    pub fn windows<'a>(&'a mut self, b: &'a abi::WindowBatch) -> windows::WindowBatch<'a> {
        window_batch(&mut self.results, b)
    }
}

pub(super) fn output(b: types::OutputBatch) -> abi::OutputBatch {
    abi::OutputBatch {
        data: b.data,
        records: b
            .records
            .into_iter()
            .map(|r| abi::OutputRecord {
                source: r.source,
                topic: r.topic,
                key: r.key.map(from_span),
                value: r.value.map(from_span),
                headers: from_span(r.headers),
                timestamp: r.timestamp,
            })
            .collect(),
        headers: b.headers.into_iter().map(from_header).collect(),
        topics: b.topics,
        rejects: b.rejects.into_iter().map(reject).collect(),
        window_adds: b.window_adds.into_iter().map(window_add).collect(),
    }
}
