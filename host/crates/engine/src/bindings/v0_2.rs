//! Bindings for `weir:transform/plugin@0.2.x`: 0.1's interfaces plus
//! timers (0.2.0) and tables (0.2.1), with record metadata packed into
//! bytes (the layouts are documented in `wit/0.2/types.wit`). Components
//! built against 0.2.0 link to these by semver: patch versions only add.

wasmtime::component::bindgen!({
    path: "../../../wit/0.2",
    world: "weir:transform/plugin@0.2.1",
    // State calls may fail on the host side (storage errors, quotas); they
    // trap the guest rather than hand it an error it could ignore.
    imports: { default: trappable },
    // Batches the host passes in are borrowed, not copied.
    ownership: Borrowing { duplicate_if_necessary: true },
});

use self::weir::transform::{log, state, tables, timers, types, windows};

use wasmtime::component::Linker;
use weir_abi::{self as abi, CallFailure, FailureKind};
use weir_state::timers::{Clock, Timer};

use crate::capabilities::{
    self, LogCapability, StateCapability, TablesCapability, WindowsCapability,
};
use crate::host_state::HostState;
use crate::transform::log::LogLevel;

/// Links the world's imports, each capability with its own view. Timers are
/// state, and get the state's view.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker::<HostState, capabilities::Log>(linker, HostState::log_capability)?;
    state::add_to_linker::<HostState, capabilities::State>(linker, HostState::state_capability)?;
    windows::add_to_linker::<HostState, capabilities::Windows>(
        linker,
        HostState::windows_capability,
    )?;
    timers::add_to_linker::<HostState, capabilities::State>(linker, HostState::state_capability)?;
    tables::add_to_linker::<HostState, capabilities::TablesView>(
        linker,
        HostState::tables_capability,
    )?;
    Ok(())
}

super::since_0_1::same_since_0_1! {
    windows::WindowKind::CountHopping(c) => abi::WindowKind::Count { size: c.size, step: c.step },
    windows::WindowKind::CountTumbling(size) => abi::WindowKind::Count { size, step: size },
}

fn clock(c: timers::Clock) -> Clock {
    match c {
        timers::Clock::EventTime => Clock::EventTime,
        timers::Clock::WallClock => Clock::WallClock,
    }
}

fn to_clock(c: Clock) -> timers::Clock {
    match c {
        Clock::EventTime => timers::Clock::EventTime,
        Clock::WallClock => timers::Clock::WallClock,
    }
}

impl timers::Host for StateCapability<'_> {
    fn set(&mut self, key: Vec<u8>, at: i64, c: timers::Clock) -> wasmtime::Result<()> {
        self.set_timer(&key, at, clock(c))
    }

    fn cancel(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        self.cancel_timer(&key)
    }

    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<(i64, timers::Clock)>> {
        Ok(self.timer(&key)?.map(|(at, c)| (at, to_clock(c))))
    }

    fn now(&mut self, c: timers::Clock) -> wasmtime::Result<i64> {
        StateCapability::now(self, clock(c))
    }
}

impl tables::Host for TablesCapability<'_> {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<u32, String>> {
        Ok(TablesCapability::open(self, &name))
    }

    fn get(&mut self, table: u32, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        TablesCapability::get(self, table, &key)
    }

    fn range(
        &mut self,
        table: u32,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<state::Entry>> {
        TablesCapability::range(self, table, &start, end.as_deref(), limit).map(entries)
    }

    fn prefix(
        &mut self,
        table: u32,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<state::Entry>> {
        TablesCapability::prefix(self, table, &prefix, after.as_deref(), limit).map(entries)
    }
}

/// Entry sizes of the packed lists.
const RECORD: usize = 40;
const HEADER: usize = 16;
/// The packed `none`: a null key, value, header value or default topic.
const NONE: u32 = u32::MAX;
/// The packed "keep the source's timestamp".
const KEEP_TIMESTAMP: i64 = i64::MIN;

fn put_span(out: &mut Vec<u8>, s: Option<abi::Span>) {
    let (start, len) = s.map_or((0, NONE), |s| (s.start, s.len));
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

/// Space for the packed lists of batches passed to the guest, kept by an
/// instance so a call allocates nothing.
#[derive(Default)]
pub struct Scratch {
    records: Vec<u8>,
    headers: Vec<u8>,
    results: Vec<windows::WindowResult>,
    timer_data: Vec<u8>,
    timers: Vec<timers::Fired>,
}

impl Scratch {
    pub fn input<'a>(&'a mut self, b: &'a abi::InputBatch) -> types::InputBatch<'a> {
        self.records.clear();
        self.records.reserve(b.records.len() * RECORD);
        for r in &b.records {
            self.records.extend_from_slice(&r.offset.to_le_bytes());
            self.records.extend_from_slice(&r.timestamp.to_le_bytes());
            put_span(&mut self.records, r.key);
            put_span(&mut self.records, r.value);
            put_span(&mut self.records, Some(r.headers));
        }
        self.headers.clear();
        self.headers.reserve(b.headers.len() * HEADER);
        for h in &b.headers {
            put_span(&mut self.headers, Some(h.name));
            put_span(&mut self.headers, h.value);
        }
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

    pub fn timers<'a>(&'a mut self, fired: &[Timer]) -> timers::TimerBatch<'a> {
        self.timer_data.clear();
        self.timers.clear();
        for t in fired {
            let start = self.timer_data.len() as u32;
            self.timer_data.extend_from_slice(&t.key);
            self.timers.push(timers::Fired {
                key: types::Span {
                    start,
                    len: t.key.len() as u32,
                },
                at: t.at,
                clock: to_clock(t.clock),
            });
        }
        timers::TimerBatch {
            data: &self.timer_data,
            timers: &self.timers,
        }
    }
}

fn invalid(why: &str) -> wasmtime::Error {
    wasmtime::Error::new(CallFailure::new(FailureKind::InvalidOutput, why.to_owned()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn span_at(b: &[u8], at: usize) -> Option<abi::Span> {
    let len = u32_at(b, at + 4);
    (len != NONE).then(|| abi::Span {
        start: u32_at(b, at),
        len,
    })
}

/// Unpacks a returned batch. Only the list lengths are checked here; spans
/// are checked against the data like those of every version (`batch::check`).
pub(super) fn output(b: types::OutputBatch) -> wasmtime::Result<abi::OutputBatch> {
    if !b.records.len().is_multiple_of(RECORD) {
        return Err(invalid(&format!(
            "packed output records are {} bytes, not a multiple of {RECORD}",
            b.records.len()
        )));
    }
    if !b.headers.len().is_multiple_of(HEADER) {
        return Err(invalid(&format!(
            "packed output headers are {} bytes, not a multiple of {HEADER}",
            b.headers.len()
        )));
    }
    let records = b
        .records
        .chunks_exact(RECORD)
        .map(|r| {
            let topic = u32_at(r, 4);
            let timestamp = i64::from_le_bytes(r[32..40].try_into().expect("8 bytes"));
            abi::OutputRecord {
                source: u32_at(r, 0),
                topic: (topic != NONE).then_some(topic),
                key: span_at(r, 8),
                value: span_at(r, 16),
                // A `none` count is an out-of-range header list, refused by the check.
                headers: abi::Span {
                    start: u32_at(r, 24),
                    len: u32_at(r, 28),
                },
                timestamp: (timestamp != KEEP_TIMESTAMP).then_some(timestamp),
            }
        })
        .collect();
    let headers = b
        .headers
        .chunks_exact(HEADER)
        .map(|h| abi::Header {
            name: abi::Span {
                start: u32_at(h, 0),
                len: u32_at(h, 4),
            },
            value: span_at(h, 8),
        })
        .collect();
    Ok(abi::OutputBatch {
        data: b.data,
        records,
        headers,
        topics: b.topics,
        rejects: b.rejects.into_iter().map(reject).collect(),
        window_adds: b.window_adds.into_iter().map(window_add).collect(),
    })
}
