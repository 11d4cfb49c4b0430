//! `weir test`: runs a plugin over records from a JSON Lines file with the
//! production engine, limits and dispatch, and state, windows and tables
//! in memory.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, Result, bail};

pub mod jsonl;

use crate::Engine;
use crate::transform::{Fired, Produced, Transform, TransformSpec};
use jsonl::InputLine;
use weir_abi::codec::{Part, RecordDecoding, RecordEncoding};
use weir_abi::{BatchBuilder, Limits};
use weir_state::PartitionState;
use weir_state::tables::{MemTable, Tables};
use weir_windows::ForceClose;

pub struct TestOptions {
    /// Deployment name used in logs and errors.
    pub name: String,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    /// Topic of input lines that name none.
    pub input_topic: String,
    /// Topic printed for outputs sent to the default output.
    pub output_topic: String,
    pub batch_size: usize,
    /// Close (and emit) every window still open at the end of the input.
    pub flush_windows: bool,
    /// Tables the transform may open besides those the input's table lines
    /// name.
    pub tables: Vec<String>,
    /// The input format records are decoded with before the transform
    /// reads them, as `weir run` does (`weir test --schema`).
    pub input_decoding: Option<Arc<dyn RecordDecoding>>,
    /// The output format of the default output topic; outputs print as
    /// the transform wrote them once they fit it.
    pub output_encoding: Option<Arc<dyn RecordEncoding>>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            name: "test".into(),
            config: Vec::new(),
            limits: Limits::default(),
            input_topic: "input".into(),
            output_topic: "output".into(),
            batch_size: 100,
            flush_windows: false,
            tables: Vec::new(),
            input_decoding: None,
            output_encoding: None,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    pub outputs: usize,
    /// Records that failed (rejected, trapped, over a limit).
    pub failed: usize,
    /// Records whose window values were late and dropped.
    pub late: usize,
}

type PartitionKey = (String, i32);

type MemTables = HashMap<String, Arc<MemTable>>;

/// The tables of a run: those declared and those the input names, empty
/// until its table lines fill them.
fn tables(opts: &TestOptions, lines: &[InputLine]) -> Result<(Arc<Tables>, MemTables)> {
    let names: Vec<&str> = opts
        .tables
        .iter()
        .map(String::as_str)
        .chain(lines.iter().filter_map(|l| l.table.as_deref()))
        .collect();
    let tables = Tables::new(names.iter().copied());
    let mut stores = HashMap::new();
    for name in tables.names() {
        let store = Arc::new(MemTable::default());
        tables.attach(name, store.clone())?;
        stores.insert(name.to_owned(), store);
    }
    Ok((tables, stores))
}

/// Runs `plugin` over `lines`, writing output lines to `out` and one line
/// per failed record to `err`. Returns an error when the run cannot go on
/// (the plugin does not load, `init` fails, a fatal error).
pub fn run(
    engine: &Engine,
    plugin: &std::path::Path,
    opts: &TestOptions,
    lines: &[InputLine],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Summary> {
    let module = Arc::new(engine.load_file(plugin)?);
    // The wall clock starts at the epoch and moves only when the input says.
    let wall_clock = Arc::new(AtomicI64::new(0));
    let (tables, table_stores) = tables(opts, lines)?;
    let spec = Arc::new(TransformSpec {
        wall_clock: Some(wall_clock.clone()),
        tables,
        input_decoding: opts.input_decoding.clone(),
        output_encoding: opts.output_encoding.clone(),
        ..TransformSpec::new(&opts.name, opts.config.clone(), opts.limits)
    });
    let shown = opts.output_encoding.as_deref();
    let mut transform = Transform::new(module, spec);
    transform
        .warm_up()
        .map_err(|f| anyhow::anyhow!("{}: {}", f.kind, f.message))?;

    let mut summary = Summary {
        records: lines.iter().filter(|l| l.is_record).count(),
        ..Summary::default()
    };
    let lines = in_processing_order(lines, &opts.input_topic);
    // As in `weir run`, inputs' partitions with the same number share state.
    let mut states: Vec<(i32, Option<Box<PartitionState>>)> = Vec::new();
    let mut next_offset: HashMap<PartitionKey, i64> = HashMap::new();
    // The index of the line whose wall clock was applied last.
    let mut ticked = None;
    let mut i = 0;
    while i < lines.len() {
        if let Some(table) = &lines[i].table {
            table_stores[table].apply(
                lines[i].key.clone().unwrap_or_default(),
                lines[i].value.clone(),
            );
            i += 1;
            continue;
        }
        if let Some(now) = lines[i].wall_clock.filter(|_| ticked != Some(i)) {
            ticked = Some(i);
            wall_clock.store(now, Ordering::Relaxed);
            for (partition, slot) in &mut states {
                let (state, fired) =
                    transform.fire_wall_clock_timers(now, slot.take().expect("state present"));
                *slot = Some(state);
                summary.outputs += print(out, &fired.produced, &opts.output_topic, shown)?;
                summary.failed += report_timers(err, lines[i].line, *partition, &fired)?;
            }
            if !lines[i].is_record {
                i += 1;
                continue;
            }
        }
        let pk: PartitionKey = (
            lines[i]
                .topic
                .clone()
                .unwrap_or_else(|| opts.input_topic.clone()),
            lines[i].partition,
        );
        let mut chunk = Vec::new();
        while i < lines.len() && chunk.len() < opts.batch_size.max(1) {
            let l = &lines[i];
            if (l.topic.as_deref().unwrap_or(&opts.input_topic), l.partition)
                != (pk.0.as_str(), pk.1)
                || l.table.is_some()
                || (!chunk.is_empty() && l.wall_clock.is_some())
            {
                break;
            }
            chunk.push(l);
            i += 1;
        }
        let mut builder = BatchBuilder::new(&pk.0, pk.1);
        let mut offsets = Vec::with_capacity(chunk.len());
        for l in &chunk {
            let next = next_offset.entry(pk.clone()).or_insert(0);
            let offset = l.offset.unwrap_or(*next);
            *next = offset + 1;
            offsets.push(offset);
            builder.push(
                offset,
                l.timestamp,
                l.key.as_deref(),
                l.value.as_deref(),
                l.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
            );
        }
        let batch = builder.finish();
        let slot = match states.iter().position(|(p, _)| *p == pk.1) {
            Some(p) => p,
            None => {
                states.push((pk.1, Some(Box::new(PartitionState::in_memory()))));
                states.len() - 1
            }
        };
        let state = states[slot]
            .1
            .take()
            .expect("state present between batches");
        let decoded = opts.input_decoding.as_ref().map(|d| d.decode(&batch, &[]));
        if let Some((index, why)) = decoded.as_ref().and_then(|d| d.waiting.clone()) {
            bail!("line {}: {why}", chunk[index as usize].line);
        }
        let (mut state, result) = match &decoded {
            Some(d) => transform.dispatch_checked(&d.batch, &d.invalid, state),
            None => transform.dispatch(&batch, state),
        };
        state.flush()?;
        states[slot].1 = Some(state);
        summary.outputs += print(out, &result.produced, &opts.output_topic, shown)?;
        for f in &result.failures {
            let l = chunk[f.index as usize];
            writeln!(
                err,
                "line {} ({} partition {} offset {}): {}: {}",
                l.line, pk.0, pk.1, offsets[f.index as usize], f.kind, f.message
            )?;
        }
        for &li in &result.late {
            writeln!(
                err,
                "line {}: late: every window of its value had closed; dropped",
                chunk[li as usize].line
            )?;
        }
        summary.failed += result.failures.len();
        summary.late += result.late.len();
        let fired = Fired {
            produced: Vec::new(),
            failures: result.timer_failures,
            host_failure: result.timer_host_failure,
        };
        summary.failed += report_timers(err, chunk.last().map_or(0, |l| l.line), pk.1, &fired)?;
        if let Some(stop) = &result.stopped {
            let l = chunk[stop.index as usize];
            bail!(
                "line {} ({} partition {}): {}: {}",
                l.line,
                pk.0,
                pk.1,
                stop.kind,
                stop.message
            );
        }
    }
    if opts.flush_windows {
        for (partition, slot) in &mut states {
            let (state, produced) =
                transform.close_windows(ForceClose::All, slot.take().expect("state present"));
            *slot = Some(state);
            let produced = produced.map_err(|f| {
                anyhow::anyhow!(
                    "flushing windows of partition {partition}: {}: {}",
                    f.kind,
                    f.message
                )
            })?;
            summary.outputs += print(out, &produced, &opts.output_topic, shown)?;
        }
    }
    out.flush().context("writing outputs")?;
    Ok(summary)
}

/// The lines in the order `weir run` processes their records once all are
/// in Kafka: each topic-partition's in the order given, and those of the
/// topics of one partition number (co-partitioned inputs, which share
/// state) merged by timestamp, ties going to the topic whose name sorts
/// first. Records never move across a table line or a wall-clock change,
/// and each partition number's records keep the places its lines had.
fn in_processing_order<'a>(lines: &'a [InputLine], default_topic: &str) -> Vec<&'a InputLine> {
    let topic = |l: &'a InputLine| l.topic.as_deref().unwrap_or(default_topic);
    let mut out: Vec<&InputLine> = Vec::with_capacity(lines.len());
    for segment in lines.split_inclusive(|l| l.table.is_some() || l.wall_clock.is_some()) {
        // A barrier ends its segment and stays where it is.
        let (records, barrier) = match segment.split_last() {
            Some((last, rest)) if last.table.is_some() || last.wall_clock.is_some() => {
                (rest, Some(last))
            }
            _ => (segment, None),
        };
        let mut merged: HashMap<i32, std::vec::IntoIter<&InputLine>> = HashMap::new();
        for number in records
            .iter()
            .map(|l| l.partition)
            .collect::<std::collections::BTreeSet<_>>()
        {
            let mut by_topic: std::collections::BTreeMap<
                &str,
                std::collections::VecDeque<&InputLine>,
            > = Default::default();
            for l in records.iter().filter(|l| l.partition == number) {
                by_topic.entry(topic(l)).or_default().push_back(l);
            }
            let mut order = Vec::new();
            // The earliest head each time; on a tie the first topic by name.
            while let Some(q) = by_topic
                .values_mut()
                .filter(|q| !q.is_empty())
                .min_by_key(|q| q[0].timestamp)
            {
                order.push(q.pop_front().expect("not empty"));
            }
            merged.insert(number, order.into_iter());
        }
        out.extend(records.iter().map(|l| {
            merged
                .get_mut(&l.partition)
                .and_then(Iterator::next)
                .expect("as many as it had")
        }));
        out.extend(barrier);
    }
    out
}

/// Writes a line per failed timer; fails the run if the host failed.
fn report_timers(err: &mut dyn Write, line: usize, partition: i32, fired: &Fired) -> Result<usize> {
    if let Some(f) = &fired.host_failure {
        bail!(
            "line {line} (partition {partition}): firing timers: {}: {}",
            f.kind,
            f.message
        );
    }
    for f in &fired.failures {
        writeln!(err, "line {line}: {}", f.describe("test", partition))?;
    }
    Ok(fired.failures.len())
}

/// Prints outputs; those to the default topic as the transform wrote
/// them if the output format can `show` them.
fn print(
    out: &mut dyn Write,
    produced: &[Produced],
    default_topic: &str,
    shown: Option<&dyn RecordEncoding>,
) -> Result<usize> {
    let mut n = 0;
    for p in produced {
        for r in p.records() {
            let show = |part: Part, bytes: Option<&[u8]>| match (shown, r.topic, bytes) {
                (Some(e), None, Some(b)) if e.encodes(part) => e.show(part, b),
                _ => None,
            };
            let (key, value) = (show(Part::Key, r.key), show(Part::Value, r.value));
            writeln!(
                out,
                "{}",
                jsonl::output_line(
                    r.topic.unwrap_or(default_topic),
                    key.as_deref().or(r.key),
                    value.as_deref().or(r.value),
                    r.timestamp,
                    r.headers()
                )
            )?;
            n += 1;
        }
    }
    Ok(n)
}
