//! The engine and dispatch against real compiled components: example
//! plugins' outputs, state, hostile plugins contained, load errors.
//!
//! (Over 400 lines: one scenario per test, each whole on the page: what it sets up, does and
//! checks.)

use std::sync::Arc;

use weir_abi::{BatchBuilder, FailureKind, InputBatch, Limits};
use weir_engine::transform::{BatchResult, Transform, TransformSpec};
use weir_engine::{Engine, EngineConfig, LoadError};
use weir_state::PartitionState;
use weir_tests::plugin;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        cache_dir: None,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn transform(engine: &Engine, name: &str, config: &[(&str, &str)], limits: Limits) -> Transform {
    let module = Arc::new(engine.load_file(&plugin(name)).unwrap());
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Transform::new(module, Arc::new(TransformSpec::new(name, config, limits)))
}

fn batch(values: &[&str]) -> InputBatch {
    let mut b = BatchBuilder::new("in", 3);
    for (i, v) in values.iter().enumerate() {
        b.push(
            100 + i as i64,
            1_000 + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(v.as_bytes()),
            [("h", Some(&b"x"[..]))],
        );
    }
    b.finish()
}

fn run(
    t: &mut Transform,
    batch: &InputBatch,
    state: Box<PartitionState>,
) -> (Box<PartitionState>, BatchResult) {
    t.dispatch(batch, state)
}

/// (topic, key, value) of every output.
fn outputs(r: &BatchResult) -> Vec<(Option<String>, Option<String>, Option<String>)> {
    let s = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    r.records()
        .map(|o| (o.topic.map(str::to_owned), s(o.key), s(o.value)))
        .collect()
}

fn values(r: &BatchResult) -> Vec<String> {
    outputs(r)
        .into_iter()
        .map(|(_, _, v)| v.unwrap_or_default())
        .collect()
}

#[test]
fn upper_keeps_key_headers_and_timestamp() {
    let e = engine();
    let mut t = transform(&e, "upper", &[], Limits::default());
    let b = batch(&["hello", "wörld"]);
    let (_, r) = run(&mut t, &b, Box::new(PartitionState::in_memory()));
    assert!(r.failures.is_empty() && r.stopped.is_none());
    let out: Vec<_> = r.records().collect();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].value, Some(&b"HELLO"[..]));
    assert_eq!(out[1].value, Some("WöRLD".as_bytes()));
    assert_eq!(out[1].key, Some(&b"k1"[..]));
    assert_eq!(out[1].timestamp, 1_001);
    assert_eq!(out[1].input, Some(1));
    assert_eq!(
        out[0].headers().collect::<Vec<_>>(),
        vec![("h", Some(&b"x"[..]))]
    );
    assert_eq!(out[0].topic, None);
}

#[test]
fn filter_keeps_matches_and_rejects_what_is_not_json() {
    let e = engine();
    let mut t = transform(
        &e,
        "filter",
        &[("field", "/level"), ("equals", "error")],
        Limits::default(),
    );
    let b = batch(&[
        r#"{"level":"error","m":1}"#,
        r#"{"level":"info"}"#,
        "not json",
        r#"{"level":"error","m":2}"#,
    ]);
    let (_, r) = run(&mut t, &b, Box::new(PartitionState::in_memory()));
    assert_eq!(
        values(&r),
        [r#"{"level":"error","m":1}"#, r#"{"level":"error","m":2}"#]
    );
    assert_eq!(r.failures.len(), 1);
    assert_eq!(
        (r.failures[0].index, r.failures[0].kind),
        (2, FailureKind::Rejected)
    );
    assert!(
        r.failures[0].message.contains("expected"),
        "{}",
        r.failures[0].message
    );
}

#[test]
fn router_fans_out_by_content() {
    let e = engine();
    let mut t = transform(
        &e,
        "router",
        &[("route.errors", "ERROR"), ("route.payments", "pay")],
        Limits::default(),
    );
    let b = batch(&["ERROR: pay failed", "just info", "pay ok"]);
    let (_, r) = run(&mut t, &b, Box::new(PartitionState::in_memory()));
    let got: Vec<_> = outputs(&r)
        .into_iter()
        .map(|(t, _, v)| (t, v.unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (Some("errors".into()), "ERROR: pay failed".into()),
            (Some("payments".into()), "ERROR: pay failed".into()),
            (None, "just info".into()),
            (Some("payments".into()), "pay ok".into()),
        ]
    );
}

#[test]
fn word_count_state_persists_across_batches_and_partitions_are_separate() {
    let e = engine();
    let mut t = transform(&e, "word-count", &[], Limits::default());
    let (p0, r) = run(
        &mut t,
        &batch(&["a b a"]),
        Box::new(PartitionState::in_memory()),
    );
    assert_eq!(
        outputs(&r)
            .iter()
            .map(|(_, k, v)| format!("{}={}", k.as_ref().unwrap(), v.as_ref().unwrap()))
            .collect::<Vec<_>>(),
        ["a=1", "b=1", "a=2"]
    );
    let (_, r) = run(&mut t, &batch(&["B, a!"]), p0);
    assert_eq!(values(&r), ["2", "3"]);
    // Another partition has its own counts.
    let (_, r) = run(
        &mut t,
        &batch(&["a"]),
        Box::new(PartitionState::in_memory()),
    );
    assert_eq!(values(&r), ["1"]);
}

#[test]
fn a_rejected_record_leaves_no_state_behind() {
    let e = engine();
    let mut t = transform(&e, "word-count", &[], Limits::default());
    let mut b = BatchBuilder::new("in", 0);
    b.push(0, 0, None, Some(b"x y"), []);
    b.push(1, 0, None, Some(&[b'x', 0xFF]), []); // not UTF-8: rejected
    b.push(2, 0, None, Some(b"x"), []);
    let (state, r) = run(&mut t, &b.finish(), Box::new(PartitionState::in_memory()));
    assert_eq!(
        r.failures
            .iter()
            .map(|f| (f.index, f.kind))
            .collect::<Vec<_>>(),
        [(1, FailureKind::Rejected)]
    );
    assert_eq!(values(&r), ["1", "1", "2"]);
    assert_eq!(state.get(b"count\0x").unwrap().as_deref(), Some(&b"2"[..]));
}

/// Runs a hostile plugin that misbehaves on values containing "poison" and
/// checks that exactly the poisoned record fails, with `kind`, and that its
/// neighbours are processed once each.
fn contained(name: &str, kind: FailureKind, limits: Limits) -> String {
    let e = engine();
    let mut t = transform(&e, name, &[("trigger", "poison")], limits);
    let b = batch(&["a", "b", "poison!", "c", "d"]);
    let (_, r) = run(&mut t, &b, Box::new(PartitionState::in_memory()));
    assert_eq!(
        values(&r),
        ["a", "b", "c", "d"],
        "{name}: neighbours processed exactly once"
    );
    assert_eq!(r.failures.len(), 1, "{name}: {:?}", r.failures);
    assert_eq!(
        (r.failures[0].index, r.failures[0].kind),
        (2, kind),
        "{name}: {}",
        r.failures[0].message
    );
    let described =
        weir_engine::transform::describe_failure("tenant-b.hostile", &b, &r.failures[0]);
    assert!(
        described.contains("deployment `tenant-b.hostile`, topic `in` partition 3 offset 102"),
        "{described}"
    );
    // The poisoned instance was replaced; processing goes on.
    assert!(t.instantiations() >= 2);
    let (_, r) = run(
        &mut t,
        &batch(&["e"]),
        Box::new(PartitionState::in_memory()),
    );
    assert_eq!(values(&r), ["e"]);
    r.failures.len().to_string() + &described
}

#[test]
fn hostile_trap_is_contained_and_named() {
    let msg = contained("hostile-trap", FailureKind::Trap, Limits::default());
    assert!(
        msg.contains("hostile-trap: refusing record at offset 102"),
        "the panic message reaches the error: {msg}"
    );
}

#[test]
fn hostile_loop_hits_the_cpu_limit() {
    let msg = contained(
        "hostile-loop",
        FailureKind::Timeout,
        Limits {
            cpu_ms_per_batch: 50,
            ..Limits::default()
        },
    );
    assert!(msg.contains("more than 50 ms of CPU time"), "{msg}");
}

#[test]
fn hostile_memory_hits_the_memory_limit() {
    let msg = contained(
        "hostile-memory",
        FailureKind::Memory,
        Limits {
            memory_mb: 32,
            ..Limits::default()
        },
    );
    assert!(msg.contains("33554432-byte limit"), "{msg}");
}

#[test]
fn hostile_recursion_hits_the_stack_limit() {
    let msg = contained("hostile-recursion", FailureKind::Stack, Limits::default());
    assert!(msg.contains("stack overflow"), "{msg}");
}

#[test]
fn hostile_flood_hits_the_output_limit() {
    let e = engine();
    let mut t = transform(
        &e,
        "hostile-flood",
        &[("trigger", "poison"), ("count", "5000")],
        Limits::default(),
    );
    let (_, r) = run(
        &mut t,
        &batch(&["a", "poison", "b"]),
        Box::new(PartitionState::in_memory()),
    );
    assert_eq!(values(&r), ["a", "b"]);
    assert_eq!(r.failures[0].kind, FailureKind::OutputLimit);
    assert!(
        r.failures[0].message.contains("5000 outputs"),
        "{}",
        r.failures[0].message
    );
    // A flood too big to even build is stopped by the memory limit.
    let mut t = transform(
        &e,
        "hostile-flood",
        &[("count", "100000000")],
        Limits {
            memory_mb: 16,
            ..Limits::default()
        },
    );
    let (_, r) = run(
        &mut t,
        &batch(&["x"]),
        Box::new(PartitionState::in_memory()),
    );
    assert_eq!(r.failures[0].kind, FailureKind::Memory);
}

#[test]
fn hostile_state_hits_the_state_limit() {
    let e = engine();
    let limits = Limits {
        max_state_bytes: Some(1 << 20),
        ..Limits::default()
    };
    let mut t = transform(&e, "hostile-state", &[], limits);
    // Each record adds a 64 KiB value: 15 fit in 1 MiB, the 16th does not.
    let sent: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let b = batch(&sent.iter().map(String::as_str).collect::<Vec<_>>());
    let (state, r) = run(&mut t, &b, Box::new(PartitionState::in_memory()));
    assert_eq!(values(&r), sent[..15]);
    assert_eq!(
        r.failures
            .iter()
            .map(|f| (f.index, f.kind))
            .collect::<Vec<_>>(),
        (15..20)
            .map(|i| (i, FailureKind::StateLimit))
            .collect::<Vec<_>>()
    );
    assert!(
        r.failures[0]
            .message
            .contains("more than max_state_bytes = 1048576"),
        "{}",
        r.failures[0].message
    );
    assert!(r.stopped.is_none());
    let full = state.state_bytes();
    assert!(full <= 1 << 20 && full > 15 * (64 << 10), "{full}");

    // At the limit, records that read or delete go on; a delete makes room
    // for one more.
    let keyed = |records: &[(&str, &str)]| {
        let mut b = BatchBuilder::new("in", 3);
        for (i, (key, value)) in records.iter().enumerate() {
            b.push(
                200 + i as i64,
                2_000,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                [],
            );
        }
        b.finish()
    };
    let (state, r) = run(
        &mut t,
        &keyed(&[
            ("k3", "read"),
            ("k0", "delete"),
            ("k20", "new"),
            ("k21", "new"),
        ]),
        state,
    );
    assert_eq!(values(&r), ["read", "delete", "new"]);
    assert_eq!(
        r.failures
            .iter()
            .map(|f| (f.index, f.kind))
            .collect::<Vec<_>>(),
        [(3, FailureKind::StateLimit)]
    );
    assert_eq!(
        state.state_bytes(),
        full + 1,
        "k20 is one byte longer than k0"
    );

    // Over a lowered limit, an overwrite of the same size still succeeds.
    let mut t = transform(
        &e,
        "hostile-state",
        &[],
        Limits {
            max_state_bytes: Some(1 << 19),
            ..Limits::default()
        },
    );
    let (state, r) = run(
        &mut t,
        &keyed(&[("k3", "same size"), ("k22", "new")]),
        state,
    );
    assert_eq!(values(&r), ["same size"]);
    assert_eq!(
        r.failures
            .iter()
            .map(|f| (f.index, f.kind))
            .collect::<Vec<_>>(),
        [(1, FailureKind::StateLimit)]
    );
    assert_eq!(state.state_bytes(), full + 1);

    // A well-behaved stateful plugin under the same limit is unaffected.
    let mut t = transform(&e, "word-count", &[], limits);
    let (_, r) = run(
        &mut t,
        &batch(&["a b a"]),
        Box::new(PartitionState::in_memory()),
    );
    assert_eq!(
        (values(&r), r.failures.len()),
        (vec!["1".to_owned(), "1".into(), "2".into()], 0)
    );
}

/// Deployments that do nothing but fail (a guest that sleeps in WASI, one
/// that loops, one that bombs the host with state writes) share the real
/// scheduler's two workers with a healthy one, which keeps being served
/// the whole time: every one of its batches comes back, correct, within a
/// bounded time.
#[test]
fn other_deployments_keep_running_beside_hostile_ones_on_the_shared_workers() {
    use std::sync::mpsc::channel;
    use std::time::{Duration, Instant};
    use weir_pipeline::workers::{Job, Outcome, Runnable, Slice, Work, Workers};
    let e = engine();
    let runnable = |path: std::path::PathBuf, config: &[(&str, &str)], limits: Limits| {
        let module = Arc::new(e.load_file(&path).unwrap());
        let config = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(Runnable::new(
            module,
            Arc::new(TransformSpec::new("t", config, limits)),
            1.0,
        ))
    };
    let quick = Limits {
        cpu_ms_per_batch: 100,
        ..Limits::default()
    };
    let hostile = [
        (
            "sleeper",
            runnable(
                weir_tests::wasip2_plugin("hostile-sleep"),
                &[("mode", "forever")],
                quick,
            ),
        ),
        ("looper", runnable(plugin("hostile-loop"), &[], quick)),
        (
            "undo",
            runnable(plugin("hostile-host"), &[("attack", "undo")], quick),
        ),
    ];
    let good = runnable(plugin("upper"), &[], Limits::default());
    let workers = Workers::start(2, weir_engine::worker_stack_size(&EngineConfig::default()));
    let (tx, rx) = channel();
    let job = |r: &Arc<Runnable>, values: &[&str]| Job {
        runnable: r.clone(),
        partition: 0,
        work: Work::Batch(vec![Slice {
            batch: batch(values),
            invalid: Vec::new(),
        }]),
        state: Box::new(PartitionState::in_memory()),
        reply: tx.clone(),
    };
    for (name, r) in &hostile {
        workers.submit("evil", name, job(r, &["x", "y", "z", "w"]));
    }
    let (mut served, mut hostile_failures, mut slowest) = (0, 0, Duration::ZERO);
    let mut submitted = Instant::now();
    workers.submit("good", "upper", job(&good, &["msg 0"]));
    let deadline = Instant::now() + Duration::from_secs(120);
    while served < 50 || hostile_failures < 12 {
        assert!(
            Instant::now() < deadline,
            "served {served}, hostile failures {hostile_failures}"
        );
        let done = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a job came back");
        let Outcome::Batch(mut results) = done.outcome else {
            panic!("a batch outcome")
        };
        let result = results.pop().expect("the slice's result");
        if Arc::ptr_eq(&done.runnable, &good) {
            assert_eq!(values(&result), [format!("MSG {served}")]);
            slowest = slowest.max(submitted.elapsed());
            served += 1;
            submitted = Instant::now();
            workers.submit("good", "upper", job(&good, &[&format!("msg {served}")]));
        } else {
            assert!(result.records().next().is_none() && !result.failures.is_empty());
            hostile_failures += result.failures.len();
            if hostile_failures < 12 {
                let (name, r) = hostile
                    .iter()
                    .find(|(_, r)| Arc::ptr_eq(r, &done.runnable))
                    .unwrap();
                workers.submit("evil", name, job(r, &["x", "y", "z", "w"]));
            }
        }
    }
    workers.shutdown();
    // A healthy batch waits at most for one hostile job to finish its
    // bisection: a few CPU limits, not forever.
    assert!(
        slowest < Duration::from_secs(10),
        "a healthy batch waited {slowest:?}"
    );
}

/// Runs `values` through plugin `path` on a worker-sized thread and gives
/// it a minute: an attack on the host must fail its records quickly, never
/// hang, abort or take the host's memory.
fn attacked(
    path: std::path::PathBuf,
    config: &[(&str, &str)],
    limits: Limits,
    values: &[&str],
) -> (BatchResult, u64) {
    attacked_by(path, config, limits, batch(values))
}

/// [`attacked`] with a batch of any records.
fn attacked_by(
    path: std::path::PathBuf,
    config: &[(&str, &str)],
    limits: Limits,
    b: InputBatch,
) -> (BatchResult, u64) {
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    attacked_as(path, TransformSpec::new("attacker", config, limits), b)
}

/// [`attacked_by`] with a transform set up as `spec` says.
fn attacked_as(path: std::path::PathBuf, spec: TransformSpec, b: InputBatch) -> (BatchResult, u64) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(weir_engine::worker_stack_size(&EngineConfig::default()))
        .spawn(move || {
            let module = Arc::new(engine().load_file(&path).unwrap());
            let mut t = Transform::new(module, Arc::new(spec));
            let (_, r) = t.dispatch(&b, Box::new(PartitionState::in_memory()));
            let _ = tx.send((r, t.instantiations()));
        })
        .unwrap();
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the attack was dealt with within a minute");
    assert!(
        peak_rss_bytes() < 4 << 30,
        "the host's memory stayed bounded: {} bytes at peak",
        peak_rss_bytes()
    );
    got
}

/// This process's peak resident memory.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kb << 10
}

/// A guest that makes the host do the work: a million output topic names
/// or reject messages aliasing one 16 MiB string (16 TB if each were
/// copied), 100,000 outputs sharing a million-header span (10^11 header
/// visits), a 16 MiB state value written forever (an undo log growing
/// without end). Each fails its records on the host's per-call budget.
#[test]
fn attacks_through_the_host_fail_their_records_on_its_budget() {
    for attack in ["alias-topics", "alias-rejects", "header-span", "undo"] {
        let (r, _) = attacked(
            plugin("hostile-host"),
            &[("attack", attack)],
            Limits::default(),
            &["a", "b"],
        );
        assert_eq!(r.failures.len(), 2, "{attack}: {:?}", r.failures);
        for f in &r.failures {
            assert_eq!(f.kind, FailureKind::Memory, "{attack}: {}", f.message);
            assert!(
                f.message.contains("host memory limit") && f.message.contains("67108864 bytes"),
                "{attack}: {}",
                f.message
            );
        }
    }
    // A 10 MiB reject message reaches the failure policy cut to 4 KiB.
    let (r, _) = attacked(
        plugin("hostile-host"),
        &[("attack", "huge-reject")],
        Limits::default(),
        &["a"],
    );
    assert_eq!(r.failures[0].kind, FailureKind::Rejected);
    assert_eq!(r.failures[0].message.len(), weir_abi::MAX_MESSAGE_BYTES);
    // 100,000 outputs to one 40 MiB topic name: judged once, refused as no
    // topic name at all, quoted briefly.
    let (r, _) = attacked(
        plugin("hostile-host"),
        &[("attack", "long-topic")],
        Limits::default(),
        &["a"],
    );
    assert_eq!(
        r.failures[0].kind,
        FailureKind::TopicDenied,
        "{}",
        r.failures[0].message
    );
    assert!(
        r.failures[0]
            .message
            .contains("not a legal Kafka topic name")
            && r.failures[0].message.len() < 400,
        "{}",
        r.failures[0].message
    );
    // State ranges with their start past their end read nothing (they
    // panicked the worker), and the records go through.
    let (r, _) = attacked(
        plugin("hostile-host"),
        &[("attack", "range-reversed")],
        Limits::default(),
        &["a", "b"],
    );
    assert_eq!(values(&r), ["a", "b"], "{:?}", r.failures);
}

/// Tables are read under the call's host budget: a guest scanning a
/// 100 MiB table a hundred times with a limit of four billion entries
/// fails its record on that budget instead of copying 10 GiB into the
/// host, and so does reading an 80 MiB value. A table id `open` never returned, and a read in `init` (before
/// tables load), fail with what went wrong.
#[test]
fn table_reads_are_bounded_and_checked() {
    use weir_state::tables::{MemTable, Tables};
    let table = Arc::new(MemTable::default());
    for i in 0..100_000u32 {
        table.apply(format!("{i:08}").into_bytes(), Some(vec![b'v'; 1024]));
    }
    let spec = |attack: &str| {
        let tables = Tables::new(["t"]);
        tables.attach("t", table.clone()).unwrap();
        TransformSpec {
            tables,
            ..TransformSpec::new(
                "attacker",
                vec![("attack".into(), attack.into())],
                Limits::default(),
            )
        }
    };
    let (r, _) = attacked_as(plugin("hostile-host"), spec("table-scan"), batch(&["a"]));
    assert_eq!(r.failures.len(), 1);
    assert_eq!(
        r.failures[0].kind,
        FailureKind::Memory,
        "{}",
        r.failures[0].message
    );
    assert!(
        r.failures[0].message.contains("host memory limit"),
        "{}",
        r.failures[0].message
    );
    // A value larger than the call's budget fails the read on the budget.
    table.apply(b"big".to_vec(), Some(vec![b'v'; 80 << 20]));
    let (r, _) = attacked_as(plugin("hostile-host"), spec("table-get"), batch(&["a"]));
    assert!(
        r.failures.len() == 1 && r.failures[0].kind == FailureKind::Memory,
        "{:?}",
        r.failures
    );
    let (r, _) = attacked_as(plugin("hostile-host"), spec("table-bad-id"), batch(&["a"]));
    assert!(
        r.failures.len() == 1 && r.failures[0].message.contains("no table has id 7"),
        "{:?}",
        r.failures
    );
    let module = Arc::new(engine().load_file(&plugin("hostile-host")).unwrap());
    let spec = Arc::new(spec("table-in-init"));
    let e = weir_engine::on_wasm_thread(&EngineConfig::default(), "init", "init", move || {
        Transform::new(module, spec).warm_up()
    })
    .unwrap()
    .unwrap_err();
    assert!(
        e.message
            .contains("tables can be read only while processing records"),
        "{}",
        e.message
    );
}

/// A guest that writes state and rejects only the first record of each
/// call makes the host retry the rest, a call per record; the retries share
/// bisection's budget, so a batch of 1,000 ends in a bounded number of
/// calls, the records not run failing as such.
#[test]
fn retries_of_a_batch_share_the_isolation_budget() {
    let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    // Each call works ~10 ms here: well past a tenth of the limit, where
    // the budget (8 culprits × 12 limits) runs out before 1,000 calls.
    let (r, _) = attacked(
        plugin("hostile-host"),
        &[("attack", "reject-first")],
        Limits {
            cpu_ms_per_batch: 10,
            ..Limits::default()
        },
        &values,
    );
    assert_eq!(r.failures.len(), 1000, "every record fails");
    let unrun = r
        .failures
        .iter()
        .filter(|f| f.message.starts_with("not run alone"))
        .count();
    assert!(
        unrun > 100,
        "{unrun} records left unrun; the last failure: {:?}",
        r.failures.last()
    );
}

/// A guest built for wasm32-wasip2 sleeps through WASI: an hour-long sleep
/// returns at once (its own clock moves on), and a sleep loop spins into
/// the CPU limit instead of holding a worker outside it.
#[test]
fn a_guest_that_sleeps_waits_for_nothing() {
    let (r, _) = attacked(
        weir_tests::wasip2_plugin("hostile-sleep"),
        &[],
        Limits::default(),
        &["a", "b"],
    );
    assert_eq!(values(&r), ["a", "b"], "{:?}", r.failures);
    let (r, _) = attacked(
        weir_tests::wasip2_plugin("hostile-sleep"),
        &[("mode", "forever")],
        Limits {
            cpu_ms_per_batch: 50,
            ..Limits::default()
        },
        &["a", "b"],
    );
    assert_eq!(
        r.failures.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [FailureKind::Timeout; 2]
    );
}

/// A batch whose every record loops would be bisected into 2n calls, each
/// burning the whole CPU limit; bisection stops at its budget (a few
/// limits' worth per culprit, for at most 8 culprits) and fails the records
/// not run alone, saying so.
#[test]
fn bisecting_a_batch_of_loops_stops_at_its_budget() {
    let values: Vec<String> = (0..256).map(|i| format!("v{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let (r, calls) = attacked(
        plugin("hostile-loop"),
        &[],
        Limits {
            cpu_ms_per_batch: 20,
            ..Limits::default()
        },
        &values,
    );
    assert_eq!(r.failures.len(), 256, "every record fails");
    assert!(r.failures.iter().all(|f| f.kind == FailureKind::Timeout));
    assert!(calls < 100, "{calls} calls, not 2 × 256");
    assert!(
        r.failures
            .iter()
            .filter(|f| f.message.starts_with("not run alone"))
            .count()
            > 200,
        "{:?}",
        r.failures.last()
    );
}

/// Window work the guest's numbers drive stays bounded: a hopping window
/// putting each value in 2^40 windows is refused when defined, sliding
/// windows with thousands of values per key aggregate in linear time per
/// value (they were quadratic), and the host's window work counts against
/// the call's CPU limit.
#[test]
fn window_bombs_are_refused_or_linear() {
    let e = engine();
    let module = Arc::new(e.load_file(&plugin("window-count")).unwrap());
    let config = vec![
        ("window".to_owned(), "hopping".to_owned()),
        ("size_ms".to_owned(), (1u64 << 40).to_string()),
        ("advance_ms".to_owned(), "1".to_owned()),
    ];
    let failure = Transform::new(
        module,
        Arc::new(TransformSpec::new("bomb", config, Limits::default())),
    )
    .warm_up()
    .unwrap_err();
    assert!(
        failure.message.contains("more than 10000"),
        "{}",
        failure.message
    );

    // Times at the ends of i64 go through every kind of window unharmed.
    for window in [
        &[("window", "tumbling"), ("size_ms", "1000")][..],
        &[
            ("window", "hopping"),
            ("size_ms", "1000"),
            ("advance_ms", "100"),
        ],
        &[("window", "sliding"), ("size_ms", "1000")],
        &[("window", "session"), ("gap_ms", "1000")],
    ] {
        let mut b = BatchBuilder::new("in", 0);
        for (i, ts) in [i64::MIN, -5, -1, 0, 1_000, i64::MAX - 1, i64::MAX]
            .into_iter()
            .enumerate()
        {
            b.push(i as i64, ts, Some(b"k"), Some(b"x"), []);
        }
        let (r, _) = attacked_by(
            plugin("window-count"),
            window,
            Limits::default(),
            b.finish(),
        );
        assert_eq!(
            r.failures
                .iter()
                .filter(|f| f.kind != FailureKind::InvalidOutput)
                .count(),
            0,
            "extreme times handled"
        );
    }

    let mut b = BatchBuilder::new("in", 0);
    for i in 0..3_000 {
        b.push(i, 1_000 + i, Some(b"k"), Some(b"x"), []);
    }
    let (r, _) = attacked_by(
        plugin("window-count"),
        &[("window", "sliding"), ("size_ms", "60000")],
        Limits::default(),
        b.finish(),
    );
    assert_eq!(r.failures.len(), 0, "3,000 values of one key");

    // A window that never closes makes each value of a key revisit every
    // earlier one (5,000 values: 12.5 million visits in one call). That
    // work is the call's, so the CPU limit ends it.
    let mut b = BatchBuilder::new("in", 0);
    for i in 0..5_000 {
        b.push(i, 1_000 + i, Some(b"k"), Some(b"x"), []);
    }
    let limits = Limits {
        cpu_ms_per_batch: 50,
        ..Limits::default()
    };
    let (r, _) = attacked_by(
        plugin("window-count"),
        &[("window", "sliding"), ("size_ms", "1000000000000")],
        limits,
        b.finish(),
    );
    assert!(
        r.failures.iter().any(|f| f.kind == FailureKind::Timeout),
        "{:?}",
        r.failures.first()
    );
}

fn load_error(bytes: &[u8]) -> String {
    let err = engine().load(bytes).err().expect("load must fail");
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    text
}

#[test]
fn bad_modules_get_a_one_line_reason() {
    assert!(load_error(b"").contains("empty file"));
    assert!(load_error(b"\x7fELF\x02\x01\x01 random bytes").contains("not a WebAssembly file"));
    assert!(
        load_error(&wat::parse_str("(module)").unwrap())
            .contains("core WebAssembly module, not a component")
    );
    let other_world = wat::parse_str(
        r#"(component (core module $m (func (export "f"))) (core instance $i (instantiate $m)) (func (export "run") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let e = load_error(&other_world);
    assert!(
        e.contains("does not export `weir:transform/handler@0.2.1`, nor an earlier version's")
            && e.contains("run"),
        "{e}"
    );
    let ungranted =
        wat::parse_str(r#"(component (import "evil:net/socket@1.0.0" (instance)))"#).unwrap();
    assert!(
        load_error(&ungranted)
            .contains("imports `evil:net/socket@1.0.0`, which Weir does not grant")
    );
    let big = EngineConfig {
        cache_dir: None,
        max_module_mb: 1,
        ..EngineConfig::default()
    };
    let err = Engine::new(big)
        .unwrap()
        .load(&vec![0u8; 2 << 20])
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
}
