//! Windowed aggregation, run by the host with Kafka Streams semantics so
//! every guest language gets identical results.
//!
//! All window state lives in the partition's [`PartitionState`] under the
//! `w` namespace, so it is rolled back with a failed call, committed with
//! the batch and restored from the changelog like any other state.
//!
//! (Over 400 lines: a fifth are the unit tests with a fake folder; each window kind has its own module.)

#![forbid(unsafe_code)]

use weir_abi::CallFailure;
use weir_abi::{Aggregation, EmitMode, WindowKind, WindowSpec};
use weir_state::PartitionState;

mod agg;
mod count;
mod keys;
mod session;
mod sliding;
mod time;

pub use agg::Agg;

/// One declared windowed aggregation.
#[derive(Clone, Debug)]
pub struct WindowDef {
    pub name: String,
    pub spec: WindowSpec,
}

/// Window definitions an instance may make: they live in the host, outside
/// the guest's memory, for as long as the instance.
pub const MAX_DEFINITIONS: usize = 64;

/// The windows a transform declared in `init`; the id is the index.
#[derive(Clone, Debug, Default)]
pub struct WindowDefs {
    defs: Vec<WindowDef>,
}

impl WindowDefs {
    pub fn define(&mut self, name: &str, spec: WindowSpec) -> Result<u32, String> {
        validate(name, &spec)?;
        if let Some(i) = self.defs.iter().position(|d| d.name == name) {
            if self.defs[i].spec != spec {
                return Err(format!(
                    "window `{name}` is already defined with a different spec"
                ));
            }
            return Ok(i as u32);
        }
        if self.defs.len() >= MAX_DEFINITIONS {
            return Err(format!(
                "window `{name}` would be definition {} of at most {MAX_DEFINITIONS}",
                self.defs.len() + 1
            ));
        }
        self.defs.push(WindowDef {
            name: name.to_owned(),
            spec,
        });
        Ok(self.defs.len() as u32 - 1)
    }

    pub fn get(&self, id: u32) -> Option<&WindowDef> {
        self.defs.get(id as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &WindowDef)> {
        self.defs.iter().enumerate().map(|(i, d)| (i as u32, d))
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

fn validate(name: &str, spec: &WindowSpec) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("a window name must be 1 to 255 bytes".into());
    }
    const MAX: u64 = MAX_TIME as u64;
    let positive = |what: &str, v: u64| {
        if v == 0 || v > MAX {
            Err(format!(
                "window `{name}`: {what} must be between 1 and {MAX} ms"
            ))
        } else {
            Ok(())
        }
    };
    match spec.kind {
        WindowKind::Tumbling(size) => positive("size", size)?,
        WindowKind::Hopping(h) => {
            positive("size", h.size_ms)?;
            positive("advance", h.advance_ms)?;
            if h.advance_ms > h.size_ms {
                return Err(format!(
                    "window `{name}`: advance ({}) must not exceed size ({})",
                    h.advance_ms, h.size_ms
                ));
            }
            // Each value lands in size / advance windows: the host's work per
            // value, which the transform must not be able to make unbounded.
            if h.size_ms.div_ceil(h.advance_ms) > MAX_WINDOWS_PER_VALUE {
                return Err(format!(
                    "window `{name}`: a size of {} ms advancing by {} ms puts each value in {} windows, more than {MAX_WINDOWS_PER_VALUE}",
                    h.size_ms,
                    h.advance_ms,
                    h.size_ms.div_ceil(h.advance_ms)
                ));
            }
        }
        WindowKind::Sliding(size) => positive("time difference", size)?,
        WindowKind::Session(gap) => positive("gap", gap)?,
        WindowKind::Count { size, step } => {
            if size == 0 || step == 0 || step > size {
                return Err(format!(
                    "window `{name}`: a count window needs 1 <= step ({step}) <= size ({size})"
                ));
            }
            if size.div_ceil(step) > MAX_WINDOWS_PER_VALUE {
                return Err(format!(
                    "window `{name}`: {size} values stepping by {step} puts each value in {} windows, more than {MAX_WINDOWS_PER_VALUE}",
                    size.div_ceil(step)
                ));
            }
        }
    }
    if spec.grace_ms > MAX {
        return Err(format!("window `{name}`: grace must be at most {MAX} ms"));
    }
    Ok(())
}

/// Largest window size, grace and event time (ms): far from `i64`'s end, so
/// window arithmetic never overflows.
pub const MAX_TIME: i64 = i64::MAX / 4;
/// Most hopping windows one value may fall into.
pub const MAX_WINDOWS_PER_VALUE: u64 = 10_000;
/// Most windows one call closes; the rest close in the next calls (stream
/// time has passed them, so they are already final).
const MAX_CLOSES_PER_CALL: usize = 50_000;

/// A value added to a window by an input record.
pub struct Add<'a> {
    pub window: u32,
    pub key: &'a [u8],
    pub timestamp: i64,
    pub number: f64,
    pub custom: Option<&'a [u8]>,
    /// The input record (index in the dispatched batch).
    pub input: u32,
}

/// A window result to hand to `on-window`.
#[derive(Clone, Debug, PartialEq)]
pub struct Emitted {
    pub window: u32,
    pub key: Vec<u8>,
    pub start: i64,
    pub end: i64,
    pub agg: Agg,
    pub closed: bool,
    /// The input record whose value produced this result, if any.
    pub input: Option<u32>,
    /// Default timestamp of outputs: the window's last instant.
    pub timestamp: i64,
}

/// Folds custom aggregations by calling into the transform, and accounts
/// for the host's work on its behalf (see `transform::budget`).
pub trait Folder {
    fn reduce(
        &mut self,
        window: u32,
        key: &[u8],
        acc: Option<&[u8]>,
        values: &[Vec<u8>],
    ) -> Result<Vec<u8>, CallFailure>;
    fn merge(
        &mut self,
        window: u32,
        key: &[u8],
        a: &[u8],
        b: &[u8],
    ) -> Result<Vec<u8>, CallFailure>;
    /// Charges the call's host budget.
    fn charge(&mut self, bytes: u64, what: &str) -> Result<(), CallFailure>;
    /// What is left of it.
    fn budget_left(&mut self) -> u64;
    /// Fails once the call has used up its CPU time.
    fn check_cpu(&mut self) -> Result<(), CallFailure>;
}

/// Host bytes a window entry costs beyond its key (entry, index, result).
const WINDOW_OVERHEAD: u64 = 96;

/// Everything a window operation needs.
pub struct Ctx<'a> {
    pub id: u32,
    pub def: &'a WindowDef,
    pub state: &'a mut PartitionState,
    pub folder: &'a mut dyn Folder,
    pub out: &'a mut Vec<Emitted>,
}

impl Ctx<'_> {
    /// Registers a window to be closed once stream time reaches `close_at`.
    fn schedule_close(&mut self, close_at: i64, key: &[u8], start: i64) -> Result<(), CallFailure> {
        keys::schedule_close(self.state, &self.def.name, close_at, key, start)
            .map_err(CallFailure::host)
    }

    /// Charges the work of touching `windows` windows of `key`.
    fn charge_windows(&mut self, windows: u64, key: &[u8]) -> Result<(), CallFailure> {
        self.folder.charge(
            windows.saturating_mul(key.len() as u64 + WINDOW_OVERHEAD),
            "window updates",
        )
    }

    /// Checks that entries read from the store fit in what is left of the
    /// budget. They are freed before the next value, so they are not
    /// charged; scans stop at the budget, so a scan that reaches it fails.
    /// Their time is the call's: past its CPU limit, the call fails.
    fn check_read<T>(
        &mut self,
        entries: &[T],
        size: impl Fn(&T) -> usize,
    ) -> Result<(), CallFailure> {
        self.folder.check_cpu()?;
        let bytes: u64 = entries.iter().map(|e| (size(e) + 16) as u64).sum();
        match bytes < self.folder.budget_left() {
            true => Ok(()),
            false => self.folder.charge(bytes, "window state reads"),
        }
    }

    fn emit_updates(&self) -> bool {
        self.def.spec.emit == EmitMode::OnUpdate
    }

    fn custom(&self) -> bool {
        self.def.spec.aggregation == Aggregation::Custom
    }

    /// Adds the value of `add` to `agg`.
    fn fold(&mut self, agg: &mut Agg, add: &Add<'_>) -> Result<(), CallFailure> {
        match (self.custom(), add.custom) {
            (true, Some(value)) => {
                let acc = self.folder.reduce(
                    self.id,
                    add.key,
                    agg.custom.as_deref(),
                    &[value.to_vec()],
                )?;
                agg.count += 1;
                agg.custom = Some(acc);
            }
            _ => agg.add(add.number),
        }
        Ok(())
    }
}

/// Applies one value. Returns `false` when the value was late for every
/// window it belongs to (and so was dropped).
pub fn add(
    defs: &WindowDefs,
    state: &mut PartitionState,
    folder: &mut dyn Folder,
    add: &Add<'_>,
    out: &mut Vec<Emitted>,
) -> Result<bool, CallFailure> {
    let def = defs.get(add.window).ok_or_else(|| {
        CallFailure::new(
            weir_abi::FailureKind::InvalidOutput,
            format!("window id {} was never defined", add.window),
        )
    })?;
    if def.spec.aggregation == Aggregation::Custom && add.custom.is_none() {
        return Err(CallFailure::new(
            weir_abi::FailureKind::InvalidOutput,
            format!(
                "window `{}` has a custom aggregation but the value has no custom bytes",
                def.name
            ),
        ));
    }
    if !(-MAX_TIME..=MAX_TIME).contains(&add.timestamp) {
        return Err(CallFailure::new(
            weir_abi::FailureKind::InvalidOutput,
            format!(
                "a window value's timestamp {} is out of range (±{MAX_TIME})",
                add.timestamp
            ),
        ));
    }
    let mut ctx = Ctx {
        id: add.window,
        def,
        state,
        folder,
        out,
    };
    match def.spec.kind {
        WindowKind::Tumbling(size) => time::add(&mut ctx, size, size, add),
        WindowKind::Hopping(h) => time::add(&mut ctx, h.size_ms, h.advance_ms, add),
        WindowKind::Sliding(size) => sliding::add(&mut ctx, size, add),
        WindowKind::Session(gap) => session::add(&mut ctx, gap, add),
        WindowKind::Count { size, step } => count::add(&mut ctx, size, step, add),
    }
}

/// Which windows to close regardless of stream time.
#[derive(Clone, Copy, Debug)]
pub enum ForceClose {
    /// Windows of definitions with `idle-close-ms` at most this many ms of
    /// partition idleness.
    Idle { idle_ms: u64 },
    /// Every window (`weir test --flush-windows`).
    All,
}

/// Closes windows without waiting for stream time; results carry no input.
pub fn force_close(
    defs: &WindowDefs,
    state: &mut PartitionState,
    folder: &mut dyn Folder,
    which: ForceClose,
    out: &mut Vec<Emitted>,
) -> Result<(), CallFailure> {
    for (id, def) in defs.iter() {
        let due = match which {
            ForceClose::All => true,
            ForceClose::Idle { idle_ms } => def.spec.idle_close_ms.is_some_and(|ms| idle_ms >= ms),
        };
        if due {
            let mut ctx = Ctx {
                id,
                def,
                state,
                folder,
                out,
            };
            close_due(&mut ctx, i64::MAX, None)?;
        }
    }
    Ok(())
}

/// Closes every window of `ctx`'s definition whose close time is at most
/// `until`, emitting final results in on-close mode. `trigger` is the input
/// record that advanced stream time; none means a forced close.
///
/// The index scan starts at the earliest scheduled close: it costs nothing
/// when nothing is due, and seeks past the index entries of windows closed
/// before instead of walking their tombstones.
fn close_due(ctx: &mut Ctx<'_>, until: i64, trigger: Option<u32>) -> Result<(), CallFailure> {
    let def = ctx.def;
    let name = &def.name;
    let earliest = keys::earliest_close(ctx.state, name).map_err(CallFailure::host)?;
    if earliest > until {
        return Ok(());
    }
    let due = keys::due(ctx.state, name, earliest, until, MAX_CLOSES_PER_CALL)
        .map_err(CallFailure::host)?;
    // Cut short, the next call goes on from the last close taken (the
    // index entries taken are deleted).
    let cut_short = (due.len() == MAX_CLOSES_PER_CALL)
        .then(|| due.last().map(|d| d.close_at))
        .flatten();
    let mut latest_close = i64::MIN;
    for entry in due {
        ctx.charge_windows(1, &entry.key)?;
        latest_close = latest_close.max(entry.close_at);
        ctx.state.put_raw(entry.index_key.clone(), None);
        let result = match ctx.def.spec.kind {
            WindowKind::Sliding(size) => {
                sliding::close(ctx, size, &entry)?.map(|(end, agg)| (entry.start, end, agg))
            }
            WindowKind::Count { .. } => count::take(ctx, &entry)?,
            _ => keys::take_window(ctx.state, name, &entry.key, entry.start, ctx.custom())
                .map_err(CallFailure::host)?
                .map(|(end, agg)| (entry.start, end, agg)),
        };
        if let Some((start, end, agg)) = result
            && !ctx.emit_updates()
        {
            let timestamp = keys::last_instant(&ctx.def.spec.kind, end);
            ctx.out.push(Emitted {
                window: ctx.id,
                key: entry.key,
                start,
                end,
                agg,
                closed: true,
                input: trigger,
                timestamp,
            });
        }
    }
    match cut_short {
        Some(last) => keys::set_earliest_close(ctx.state, name, last),
        None => keys::refresh_earliest_close(ctx.state, name, until).map_err(CallFailure::host)?,
    }
    if trigger.is_none() && latest_close != i64::MIN {
        // Values for windows closed early must count as late from now on,
        // so a window never has two final results.
        keys::advance_stream_time(ctx.state, name, latest_close);
    }
    Ok(())
}

/// Fuzzing: a partition whose window state holds arbitrary entries (as a
/// restore of a damaged or forged changelog would write them) still adds,
/// closes and reports windows of every kind without panicking; whatever it
/// cannot decode fails the call as a host error.
#[doc(hidden)]
pub fn fuzz_store(entries: &[(u8, Vec<u8>, Vec<u8>)], values: &[(Vec<u8>, i64, f64)]) {
    struct NoGuest;
    impl Folder for NoGuest {
        fn reduce(
            &mut self,
            _: u32,
            _: &[u8],
            acc: Option<&[u8]>,
            values: &[Vec<u8>],
        ) -> Result<Vec<u8>, CallFailure> {
            Ok([
                acc.unwrap_or_default().len().to_be_bytes().as_slice(),
                &values.len().to_be_bytes(),
            ]
            .concat())
        }
        fn merge(&mut self, _: u32, _: &[u8], a: &[u8], _: &[u8]) -> Result<Vec<u8>, CallFailure> {
            Ok(a.to_vec())
        }
        fn charge(&mut self, _: u64, _: &str) -> Result<(), CallFailure> {
            Ok(())
        }
        fn budget_left(&mut self) -> u64 {
            1 << 30
        }
        fn check_cpu(&mut self) -> Result<(), CallFailure> {
            Ok(())
        }
    }
    use weir_abi::Hopping;
    let mut defs = WindowDefs::default();
    let kinds = [
        WindowKind::Tumbling(1000),
        WindowKind::Hopping(Hopping {
            size_ms: 1000,
            advance_ms: 250,
        }),
        WindowKind::Sliding(1000),
        WindowKind::Session(500),
        WindowKind::Count { size: 4, step: 2 },
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        for aggregation in [Aggregation::Count, Aggregation::Custom] {
            let spec = WindowSpec {
                kind,
                grace_ms: 10,
                aggregation,
                emit: if i % 2 == 0 {
                    EmitMode::OnClose
                } else {
                    EmitMode::OnUpdate
                },
                idle_close_ms: Some(1),
            };
            let _ = defs.define(&format!("w{i}{}", aggregation == Aggregation::Custom), spec);
        }
    }
    let mut state = PartitionState::in_memory();
    let names: Vec<String> = defs.iter().map(|(_, d)| d.name.clone()).collect();
    let raw: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
        .iter()
        .map(|(which, suffix, value)| {
            let name = &names[*which as usize % names.len()];
            let tag = [b'a', b'c', b'p', b't', b'n'][*which as usize % 5];
            (
                [keys::base(name, tag), suffix.clone()].concat(),
                Some(value.clone()),
            )
        })
        .collect();
    let _ = state.write_restored(&raw);
    let mut out = Vec::new();
    for (i, (key, timestamp, number)) in values.iter().enumerate() {
        for (id, _) in defs.iter() {
            let add = Add {
                window: id,
                key,
                timestamp: *timestamp,
                number: *number,
                custom: Some(key),
                input: i as u32,
            };
            let _ = self::add(&defs, &mut state, &mut NoGuest, &add, &mut out);
        }
    }
    let _ = force_close(&defs, &mut state, &mut NoGuest, ForceClose::All, &mut out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transform's `reduce` and `merge` as a test sees them: reduce
    /// appends values, merge joins accumulators with `+`; and a host budget
    /// of `budget` bytes.
    #[derive(Default)]
    struct FakeFolder {
        merges: usize,
        budget: u64,
    }

    impl Folder for FakeFolder {
        fn reduce(
            &mut self,
            _: u32,
            _: &[u8],
            acc: Option<&[u8]>,
            values: &[Vec<u8>],
        ) -> Result<Vec<u8>, CallFailure> {
            Ok([acc.unwrap_or_default(), &values.concat()].concat())
        }
        fn merge(&mut self, _: u32, _: &[u8], a: &[u8], b: &[u8]) -> Result<Vec<u8>, CallFailure> {
            self.merges += 1;
            Ok([a, b"+", b].concat())
        }
        fn charge(&mut self, bytes: u64, what: &str) -> Result<(), CallFailure> {
            self.budget = self.budget.checked_sub(bytes).ok_or_else(|| {
                CallFailure::new(
                    weir_abi::FailureKind::Memory,
                    format!("budget spent on {what}"),
                )
            })?;
            Ok(())
        }
        fn budget_left(&mut self) -> u64 {
            self.budget
        }
        fn check_cpu(&mut self) -> Result<(), CallFailure> {
            Ok(())
        }
    }

    fn spec(kind: WindowKind, aggregation: Aggregation, emit: EmitMode) -> WindowSpec {
        WindowSpec {
            kind,
            grace_ms: 0,
            aggregation,
            emit,
            idle_close_ms: None,
        }
    }

    /// Feeds `(timestamp, custom bytes)` values of key `k` to window 0, as
    /// dispatch does (stream time first), and returns what was emitted and
    /// whether each value was on time.
    fn feed(
        defs: &WindowDefs,
        state: &mut PartitionState,
        folder: &mut FakeFolder,
        values: &[(i64, &[u8])],
    ) -> (Vec<Emitted>, Vec<bool>) {
        let (mut out, mut on_time) = (Vec::new(), Vec::new());
        for (i, &(timestamp, custom)) in values.iter().enumerate() {
            state.observe_timestamp(timestamp);
            let add = Add {
                window: 0,
                key: b"k",
                timestamp,
                number: 1.0,
                custom: Some(custom),
                input: i as u32,
            };
            on_time.push(self::add(defs, state, folder, &add, &mut out).unwrap());
        }
        (out, on_time)
    }

    #[test]
    fn a_tumbling_window_closes_once_stream_time_passes_it_and_later_values_are_late() {
        let mut defs = WindowDefs::default();
        defs.define(
            "t",
            spec(
                WindowKind::Tumbling(1000),
                Aggregation::Count,
                EmitMode::OnClose,
            ),
        )
        .unwrap();
        let (mut state, mut folder) = (
            PartitionState::in_memory(),
            FakeFolder {
                budget: 1 << 20,
                ..Default::default()
            },
        );
        let (out, on_time) = feed(
            &defs,
            &mut state,
            &mut folder,
            &[(0, b""), (500, b""), (999, b""), (2000, b""), (10, b"")],
        );
        assert_eq!(
            on_time,
            [true, true, true, true, false],
            "the value at 10 arrives after its window closed"
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let closed = &out[0];
        assert_eq!(
            (
                closed.start,
                closed.end,
                closed.agg.count,
                closed.closed,
                closed.input
            ),
            (0, 1000, 3, true, Some(3))
        );
    }

    #[test]
    fn a_value_bridging_two_sessions_merges_them_through_the_folder() {
        let mut defs = WindowDefs::default();
        // Grace keeps the first session open until the bridging value comes.
        defs.define(
            "s",
            WindowSpec {
                grace_ms: 10_000,
                ..spec(
                    WindowKind::Session(500),
                    Aggregation::Custom,
                    EmitMode::OnUpdate,
                )
            },
        )
        .unwrap();
        let (mut state, mut folder) = (
            PartitionState::in_memory(),
            FakeFolder {
                budget: 1 << 20,
                ..Default::default()
            },
        );
        let (out, _) = feed(
            &defs,
            &mut state,
            &mut folder,
            &[(0, b"a"), (1000, b"b"), (500, b"c")],
        );
        assert_eq!(folder.merges, 1);
        let last = out.last().unwrap();
        assert_eq!(
            (last.start, last.end, last.agg.count),
            (0, 1000, 3),
            "{out:?}"
        );
        let custom = String::from_utf8(last.agg.custom.clone().unwrap()).unwrap();
        assert!(
            custom.contains('+')
                && custom.contains('a')
                && custom.contains('b')
                && custom.contains('c'),
            "{custom}"
        );
    }

    #[test]
    fn count_windows_close_when_full_and_a_forced_close_ends_the_rest() {
        let mut defs = WindowDefs::default();
        defs.define(
            "c",
            spec(
                WindowKind::Count { size: 3, step: 2 },
                Aggregation::Count,
                EmitMode::OnClose,
            ),
        )
        .unwrap();
        let (mut state, mut folder) = (
            PartitionState::in_memory(),
            FakeFolder {
                budget: 1 << 20,
                ..Default::default()
            },
        );
        // Time plays no part: an old timestamp is on time, not late.
        let (out, on_time) = feed(
            &defs,
            &mut state,
            &mut folder,
            &[(50, b""), (60, b""), (10, b""), (70, b"")],
        );
        assert_eq!(on_time, [true; 4]);
        let windows: Vec<_> = out
            .iter()
            .map(|e| (e.start, e.end, e.agg.count, e.closed, e.input))
            .collect();
        assert_eq!(
            windows,
            [(50, 10, 3, true, Some(2))],
            "values 0-2 fill the first window; the second holds 2 and 3"
        );
        let mut rest = Vec::new();
        force_close(&defs, &mut state, &mut folder, ForceClose::All, &mut rest).unwrap();
        let windows: Vec<_> = rest
            .iter()
            .map(|e| (e.start, e.end, e.agg.count, e.closed, e.input))
            .collect();
        assert_eq!(windows, [(10, 70, 2, true, None)]);
        rest.clear();
        force_close(&defs, &mut state, &mut folder, ForceClose::All, &mut rest).unwrap();
        assert!(rest.is_empty(), "a window is final once: {rest:?}");
        // After a forced close the key's values are numbered from 0 again.
        let (out, _) = feed(
            &defs,
            &mut state,
            &mut folder,
            &[(1, b""), (2, b""), (3, b"")],
        );
        let windows: Vec<_> = out.iter().map(|e| (e.start, e.end, e.agg.count)).collect();
        assert_eq!(windows, [(1, 3, 3)]);
    }

    #[test]
    fn count_windows_need_a_step_within_their_size() {
        let mut defs = WindowDefs::default();
        for (size, step) in [(0, 0), (3, 0), (3, 4)] {
            let err = defs
                .define(
                    "c",
                    spec(
                        WindowKind::Count { size, step },
                        Aggregation::Count,
                        EmitMode::OnClose,
                    ),
                )
                .unwrap_err();
            assert!(err.contains("1 <= step"), "{err}");
        }
        let err = defs
            .define(
                "c",
                spec(
                    WindowKind::Count {
                        size: 1 << 40,
                        step: 1,
                    },
                    Aggregation::Count,
                    EmitMode::OnClose,
                ),
            )
            .unwrap_err();
        assert!(err.contains("windows, more than"), "{err}");
    }

    #[test]
    fn window_work_is_charged_to_the_folder_budget() {
        let mut defs = WindowDefs::default();
        let hopping = WindowKind::Hopping(weir_abi::Hopping {
            size_ms: 10_000,
            advance_ms: 1,
        });
        defs.define("h", spec(hopping, Aggregation::Count, EmitMode::OnClose))
            .unwrap();
        let (mut state, mut folder) = (
            PartitionState::in_memory(),
            FakeFolder {
                budget: 4096,
                ..Default::default()
            },
        );
        state.observe_timestamp(100_000);
        let add = Add {
            window: 0,
            key: b"k",
            timestamp: 100_000,
            number: 1.0,
            custom: None,
            input: 0,
        };
        let failure = self::add(&defs, &mut state, &mut folder, &add, &mut Vec::new()).unwrap_err();
        assert_eq!(failure.kind, weir_abi::FailureKind::Memory, "{failure:?}");
    }

    #[test]
    fn definitions_are_capped() {
        let spec = WindowSpec {
            kind: WindowKind::Tumbling(1000),
            grace_ms: 0,
            aggregation: Aggregation::Count,
            emit: EmitMode::OnClose,
            idle_close_ms: None,
        };
        let mut defs = WindowDefs::default();
        for i in 0..MAX_DEFINITIONS {
            assert_eq!(defs.define(&format!("w{i}"), spec), Ok(i as u32));
        }
        assert_eq!(
            defs.define("w0", spec),
            Ok(0),
            "a name already defined is still found"
        );
        assert!(
            defs.define("one-more", spec)
                .unwrap_err()
                .contains("at most 64")
        );
    }
}
