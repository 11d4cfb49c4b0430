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
use crate::transform::budget::HostBudget;
use crate::transform::instance::HostState;
use crate::transform::log::LogLevel;

/// State is reachable only while the host processes a partition's records.
#[derive(Debug, thiserror::Error)]
#[error("state is only available while processing records (in `process` or `on-window`), not in `init`, `reduce` or `merge`")]
struct NoPartition;

/// Charges the call's host budget for `bytes` of `what`.
fn charge(budget: &mut HostBudget, bytes: usize, what: &str) -> wasmtime::Result<()> {
    budget.try_charge(bytes as u64, what).map_err(wasmtime::Error::new)
}

/// Host bytes a state entry costs beyond its key and value (map slots, the
/// undo log).
const ENTRY_OVERHEAD: usize = 64;

/// Links the world's imports, each capability with its own view.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, capabilities::Log>(linker, HostState::log_capability)?;
    state::add_to_linker::<HostState, capabilities::State>(linker, HostState::state_capability)?;
    windows::add_to_linker::<HostState, capabilities::Windows>(linker, HostState::windows_capability)?;
    Ok(())
}

impl log::Host for LogCapability<'_> {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        charge(self.budget, message.len().min(crate::transform::log::MAX_LINE_BYTES), "log lines")?;
        if level == LogLevel::Error {
            self.last_error.set(&message);
        }
        self.log.write(level, &message);
        Ok(())
    }
}

impl StateCapability<'_> {
    fn partition(&mut self) -> wasmtime::Result<&mut weir_state::PartitionState> {
        self.partition.as_deref_mut().ok_or_else(|| NoPartition.into())
    }

    /// A scan's `limit`, at most as many entries as the budget could pay
    /// for if each were empty, so a guest asking for four billion gets
    /// what it can afford, not a scan of the whole store.
    fn entries_affordable(&self, limit: u32) -> u32 {
        limit.min((self.budget.left() / ENTRY_OVERHEAD as u64).min(u64::from(u32::MAX)) as u32)
    }

    fn entries(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> wasmtime::Result<Vec<state::Entry>> {
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD).sum();
        charge(self.budget, bytes, "state scans")?;
        Ok(entries.into_iter().map(|(key, value)| state::Entry { key, value }).collect())
    }
}

impl state::Host for StateCapability<'_> {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        let value = self.partition()?.get(&key).map_err(wasmtime::Error::from_anyhow)?;
        charge(self.budget, key.len() + value.as_ref().map_or(0, Vec::len), "state reads")?;
        Ok(value)
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        charge(self.budget, key.len() + value.len() + ENTRY_OVERHEAD, "state writes")?;
        let state = self.partition()?;
        state.set(&key, &value, ttl_ms);
        match state.take_oversize() {
            Some((bytes, limit)) => Err(wasmtime::Error::new(weir_abi::LimitExceeded::StateEntry { bytes, limit })),
            None => Ok(()),
        }
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        charge(self.budget, key.len() + ENTRY_OVERHEAD, "state writes")?;
        self.partition()?.delete(&key);
        Ok(())
    }

    fn range(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<state::Entry>> {
        let limit = self.entries_affordable(limit);
        let max_bytes = self.budget.left();
        let entries = self.partition()?.range(&start, end.as_deref(), limit, max_bytes).map_err(wasmtime::Error::from_anyhow)?;
        self.entries(entries)
    }

    fn prefix(&mut self, prefix: Vec<u8>, after: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<state::Entry>> {
        let limit = self.entries_affordable(limit);
        let max_bytes = self.budget.left();
        let entries = self.partition()?.prefix(&prefix, after.as_deref(), limit, max_bytes).map_err(wasmtime::Error::from_anyhow)?;
        self.entries(entries)
    }
}

impl windows::Host for WindowsCapability<'_> {
    fn define(&mut self, name: String, spec: windows::WindowSpec) -> wasmtime::Result<Result<u32, String>> {
        Ok(self.defs.define(&name, window_spec(spec)))
    }
}

// Conversions to and from the host's types. Records are small structs of
// spans, copied field by field; the data buffers are borrowed going in and
// moved coming out, never copied.

fn span(s: abi::Span) -> types::Span {
    types::Span { start: s.start, len: s.len }
}

fn from_span(s: types::Span) -> abi::Span {
    abi::Span { start: s.start, len: s.len }
}

fn header(h: &abi::Header) -> types::Header {
    types::Header { name: span(h.name), value: h.value.map(span) }
}

fn from_header(h: types::Header) -> abi::Header {
    abi::Header { name: from_span(h.name), value: h.value.map(from_span) }
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
        self.records.extend(b.records.iter().map(|r| types::InputRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(span),
            value: r.value.map(span),
            headers: span(r.headers),
        }));
        self.headers.clear();
        self.headers.extend(b.headers.iter().map(header));
        types::InputBatch { topic: &b.topic, partition: b.partition, data: &b.data, records: &self.records, headers: &self.headers }
    }

    pub fn windows<'a>(&'a mut self, b: &'a abi::WindowBatch) -> windows::WindowBatch<'a> {
        self.results.clear();
        self.results.extend(b.results.iter().map(|r| windows::WindowResult {
            window: r.window,
            key: span(r.key),
            start: r.start,
            end: r.end,
            count: r.count,
            value: r.value,
            custom: r.custom.map(span),
            closed: r.closed,
        }));
        windows::WindowBatch { data: &b.data, results: &self.results }
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
        rejects: b.rejects.into_iter().map(|r| abi::Reject { source: r.source, message: r.message }).collect(),
        window_adds: b
            .window_adds
            .into_iter()
            .map(|a| abi::WindowAdd {
                window: a.window,
                source: a.source,
                key: from_span(a.key),
                timestamp: a.timestamp,
                number: a.number,
                custom: a.custom.map(from_span),
            })
            .collect(),
    }
}

fn window_spec(s: windows::WindowSpec) -> abi::WindowSpec {
    abi::WindowSpec {
        kind: match s.kind {
            windows::WindowKind::Tumbling(ms) => abi::WindowKind::Tumbling(ms),
            windows::WindowKind::Hopping(h) => abi::WindowKind::Hopping(abi::Hopping { size_ms: h.size_ms, advance_ms: h.advance_ms }),
            windows::WindowKind::Sliding(ms) => abi::WindowKind::Sliding(ms),
            windows::WindowKind::Session(ms) => abi::WindowKind::Session(ms),
        },
        grace_ms: s.grace_ms,
        aggregation: match s.aggregation {
            windows::Aggregation::Count => abi::Aggregation::Count,
            windows::Aggregation::Sum => abi::Aggregation::Sum,
            windows::Aggregation::Min => abi::Aggregation::Min,
            windows::Aggregation::Max => abi::Aggregation::Max,
            windows::Aggregation::Mean => abi::Aggregation::Mean,
            windows::Aggregation::Custom => abi::Aggregation::Custom,
        },
        emit: match s.emit {
            windows::EmitMode::OnUpdate => abi::EmitMode::OnUpdate,
            windows::EmitMode::OnClose => abi::EmitMode::OnClose,
        },
        idle_close_ms: s.idle_close_ms,
    }
}
