//! Hostile: attacks the host through the raw WIT world (not the SDK's safe
//! types), in the mode named by config `attack`, on every record:
//!
//! - `alias-topics`, `alias-rejects`: returns a million output topic names
//!   (or reject messages) that all point at one 16 MiB string: 16 TB for a
//!   host that copies each;
//! - `header-span`: returns 100,000 outputs whose headers span the same
//!   million headers: 10^11 header visits for a host that walks each;
//! - `undo`: sets one state key to a 16 MiB value, forever: gigabytes of
//!   undo log for a host that keeps every old value;
//! - `huge-reject`: rejects each record with a 10 MiB message, which a
//!   dead letter would carry in a header;
//! - `long-topic`: sends 100,000 outputs to one 40 MiB topic name: 4 TB
//!   hashed for a host that looks the name up for each;
//! - `reject-first`: writes state, works a while, and rejects only the
//!   first record of each call: a call per record for a host that retries
//!   the rest without a budget;
//! - `range-reversed`: reads state with a range whose start is past its
//!   end (and forwards the records): a panic for a host that hands it to
//!   an ordered map;
//! - `ragged`: returns packed output records 39 bytes long;
//! - `timer-storm`: sets a timer for the distant past on every record, which
//!   sets itself again each time it fires: an endless loop for a host that
//!   fires until nothing is due (the records are forwarded, and each
//!   `on-timer` call emits one null record);
//! - `table-scan`: scans table `t` whole, with a limit of four billion
//!   entries, a hundred times per call: the table's size, a hundred times
//!   over, in host memory for a host that does not bound what it copies;
//! - `table-get`: reads key `big` of table `t` (a value larger than the
//!   call's host budget);
//! - `table-bad-id`: reads a table by an id `open` never returned;
//! - `table-in-init`: reads table `t` in `init`, before tables are loaded.

use weir_sdk::bindings::exports::weir::transform::handler::Guest;
use weir_sdk::bindings::weir::transform::timers::{self, Clock, TimerBatch};
use weir_sdk::bindings::weir::transform::types::{InputBatch, OutputBatch, Reject};
use weir_sdk::bindings::weir::transform::{state, tables, windows::WindowBatch};

const NONE: u32 = u32::MAX;

/// A packed output record (the layout of `wit/0.2/types.wit`).
fn record(source: u32, topic: u32, value: (u32, u32), headers: (u32, u32)) -> [u8; 40] {
    let mut r = [0u8; 40];
    for (at, v) in [
        (0, source),
        (4, topic),
        (8, 0),
        (12, NONE),
        (16, value.0),
        (20, value.1),
        (24, headers.0),
        (28, headers.1),
    ] {
        r[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    r[32..].copy_from_slice(&i64::MIN.to_le_bytes());
    r
}

static mut ATTACK: String = String::new();

fn attack() -> &'static str {
    // SAFETY: the instance is single-threaded; written once in `init`.
    unsafe { (*std::ptr::addr_of!(ATTACK)).as_str() }
}

/// `n` strings sharing one buffer of `len` bytes. Unsound on purpose: the
/// host reads them after the call, and the guest's own frees of them
/// afterwards are its own problem.
fn aliases(n: usize, len: usize) -> Vec<String> {
    let mut big = std::mem::ManuallyDrop::new(vec![b'x'; len]);
    let (ptr, len, cap) = (big.as_mut_ptr(), big.len(), big.capacity());
    // SAFETY: none; see above.
    (0..n)
        .map(|_| unsafe { String::from_raw_parts(ptr, len, cap) })
        .collect()
}

fn empty() -> OutputBatch {
    OutputBatch {
        data: Vec::new(),
        records: Vec::new(),
        headers: Vec::new(),
        topics: Vec::new(),
        rejects: Vec::new(),
        window_adds: Vec::new(),
    }
}

struct Hostile;

impl Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let a = config
            .into_iter()
            .find(|(k, _)| k == "attack")
            .map(|(_, v)| v)
            .ok_or("config `attack` is required")?;
        if a == "table-in-init" {
            let _ = tables::get(tables::open("t")?, b"k");
        }
        // SAFETY: see `attack`.
        unsafe { *std::ptr::addr_of_mut!(ATTACK) = a };
        Ok(())
    }

    fn process(batch: InputBatch) -> Result<OutputBatch, String> {
        let mut out = empty();
        match attack() {
            "alias-topics" => {
                out.topics = aliases(1_000_000, 16 << 20);
                out.records
                    .extend_from_slice(&record(0, 0, (0, NONE), (0, 0)));
            }
            "alias-rejects" => {
                out.rejects = aliases(1_000_000, 16 << 20)
                    .into_iter()
                    .map(|message| Reject { source: 0, message })
                    .collect();
            }
            "header-span" => {
                out.headers = vec![0; 1_000_000 * 16];
                out.records = (0..100_000)
                    .flat_map(|_| record(0, NONE, (0, NONE), (0, 1_000_000)))
                    .collect();
            }
            "undo" => loop {
                state::set(b"k", &vec![b'u'; 16 << 20], None);
            },
            "huge-reject" => {
                out.rejects = (0..batch.records.len() as u32 / 40)
                    .map(|source| Reject {
                        source,
                        message: "r".repeat(10 << 20),
                    })
                    .collect();
            }
            "long-topic" => {
                out.topics = vec!["x".repeat(40 << 20)];
                out.records = (0..100_000)
                    .flat_map(|_| record(0, 0, (0, NONE), (0, 0)))
                    .collect();
            }
            "reject-first" => {
                state::set(b"k", b"v", None);
                let mut x = 0u64;
                for i in 0..30_000_000u64 {
                    x = std::hint::black_box(x.wrapping_add(i));
                }
                out.rejects.push(Reject {
                    source: 0,
                    message: format!("first of {} ({x})", batch.records.len() / 40),
                });
            }
            "range-reversed" => {
                state::set(b"b", b"1", None);
                let _ = state::range(b"z", Some(b"a"), 10);
                let _ = state::prefix(b"b", Some(b"c"), 10);
                // The host's input data, returned whole: each output's value
                // keeps the position its input had.
                out.data = batch.data.clone();
                for (source, r) in batch.records.chunks_exact(40).enumerate() {
                    let value = (
                        u32::from_le_bytes(r[24..28].try_into().unwrap()),
                        u32::from_le_bytes(r[28..32].try_into().unwrap()),
                    );
                    out.records
                        .extend_from_slice(&record(source as u32, NONE, value, (0, 0)));
                }
            }
            "ragged" => {
                out.records = vec![0; 39];
            }
            "table-scan" => {
                let t = tables::open("t")?;
                let mut seen = 0;
                for _ in 0..100 {
                    seen += tables::range(t, b"", None, u32::MAX).len();
                }
                return Err(format!("read {seen} entries"));
            }
            "table-get" => {
                let value = tables::get(tables::open("t")?, b"big");
                return Err(format!("read {} bytes", value.map_or(0, |v| v.len())));
            }
            "table-bad-id" => {
                let _ = tables::get(7, b"k");
            }
            "timer-storm" => {
                // A timer for the distant past on every record, which sets
                // itself again whenever it fires: due forever.
                for i in 0..batch.records.len() / 40 {
                    timers::set(&(i as u32).to_le_bytes(), i64::MIN, Clock::EventTime);
                }
                out.data = batch.data.clone();
                for (source, r) in batch.records.chunks_exact(40).enumerate() {
                    let value = (
                        u32::from_le_bytes(r[24..28].try_into().unwrap()),
                        u32::from_le_bytes(r[28..32].try_into().unwrap()),
                    );
                    out.records
                        .extend_from_slice(&record(source as u32, NONE, value, (0, 0)));
                }
            }
            other => return Err(format!("unknown attack `{other}`")),
        }
        std::mem::forget(batch);
        Ok(out)
    }

    fn on_timer(batch: TimerBatch) -> Result<OutputBatch, String> {
        for t in &batch.timers {
            let key = &batch.data[t.key.start as usize..(t.key.start + t.key.len) as usize];
            timers::set(key, i64::MIN, Clock::EventTime);
        }
        // One output per call, so a test can count the calls.
        let mut out = empty();
        out.records
            .extend_from_slice(&record(0, NONE, (0, NONE), (0, 0)));
        Ok(out)
    }

    fn on_window(_batch: WindowBatch) -> Result<OutputBatch, String> {
        Ok(empty())
    }

    fn reduce(
        _window: u32,
        _key: Vec<u8>,
        _acc: Option<Vec<u8>>,
        _values: Vec<Vec<u8>>,
    ) -> Vec<u8> {
        Vec::new()
    }

    fn merge(_window: u32, _key: Vec<u8>, a: Vec<u8>, _b: Vec<u8>) -> Vec<u8> {
        a
    }
}

weir_sdk::bindings::__export_plugin!(Hostile with_types_in weir_sdk::bindings);
