//! What a tenant holding only its own token can make a host do through
//! uploads and deployments, on Apache Kafka, with another tenant's work
//! measured beside it: compile bombs killed at their limits with nobody
//! waiting behind them, the instance pool held in tenants' shares and
//! given back, module storage under quota, buffered input within budget;
//! and stalls (an input held by an open transaction, a producer that
//! delivers nothing, a shutdown while the broker hangs) that show.
//!
//! The tests run one at a time: their timings are the point, and two
//! compile bombs at once on two cores would measure each other.
//!
//! (Over 400 lines: one attack per test, each whole on the page with the victim measured beside
//! it.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weir_tests::kafka::{Broker, Rec, Weir, now_ms};
use weir_tests::tenants::{self, ACME, EVIL, call, start_host};
use weir_tests::{component, plugin};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Two tenants; `evil` under tight quotas. Each host compiles with a cache
/// of its own (hosts on one machine would share the default), under small
/// compile limits.
fn config() -> String {
    tenants::config(
        "workers = 2\nshutdown_timeout_ms = 5000",
        "cache_dir = \"{state}/compiled\"\ncompile = { memory_mb = 1024, seconds = 2 }",
        "{ cpu_ms_per_batch = 100, max_module_mb = 24, max_instances = 2, max_modules = 4, max_module_storage_mb = 30, max_buffered_mb = 4 }",
    )
}

fn upload(host: &Weir, token: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    call(host, Method::PUT, "/v1/modules", token, Some(bytes))
}

fn deploy(host: &Weir, token: &str, name: &str, bytes: Vec<u8>, spec: Value) {
    let (code, up) = upload(host, token, bytes);
    assert_eq!(code, StatusCode::CREATED, "{up}");
    let mut spec = spec;
    spec["module"] = up["module"].clone();
    let (code, v) = call(
        host,
        Method::POST,
        &format!("/v1/deployments/{name}"),
        token,
        Some(serde_json::to_vec(&spec).unwrap()),
    );
    assert_eq!(code, StatusCode::CREATED, "{v}");
}

/// Polls `f` until it gives something, for `secs` at most.
fn eventually<T>(what: &str, secs: u64, host: &Weir, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {secs} s; log:\n{}",
            host.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A component whose one function has `locals` i64 locals, all live
/// across `ifs` branches: Cranelift's memory grows about as their product.
fn memory_bomb(locals: usize, ifs: usize) -> Vec<u8> {
    let mut w = format!(
        "(component (core module (func (export \"f\") (param i32) (result i64) (local {}) (loop $l\n",
        "i64 ".repeat(locals)
    );
    for i in 0..ifs {
        let (k, j) = (1 + (i * 7) % locals, 1 + (i * 13 + 5) % locals);
        w += &format!(
            "(if (local.get 0) (then (local.set {k} (i64.add (local.get {k}) (local.get {j})))))\n"
        );
    }
    w += "(br_if $l (local.get 0))) (local.get 1))))";
    wat::parse_str(&w).unwrap()
}

/// A component of `funcs` small functions: long to compile, in little
/// memory.
fn time_bomb(funcs: usize, ifs: usize) -> Vec<u8> {
    let mut w = String::from("(component (core module\n");
    for _ in 0..funcs {
        w += "(func (param i32) (result i64) (local i64 i64 i64 i64)\n";
        for i in 0..ifs {
            w += &format!(
                "(if (local.get 0) (then (local.set {} (i64.add (local.get {}) (i64.const {i})))))\n",
                1 + i % 4,
                1 + (i + 1) % 4
            );
        }
        w += "(local.get 1))\n";
    }
    w += "))";
    wat::parse_str(&w).unwrap()
}

/// A valid component of the world (upper) made distinct by a custom
/// section of `bytes` random bytes: another module to the registry.
fn padded_upper(bytes: usize, seed: u64) -> Vec<u8> {
    let mut module = std::fs::read(plugin("upper")).unwrap();
    let name = b"weir-test-padding";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    let mut x = seed.wrapping_mul(2).wrapping_add(1);
    payload.extend((0..bytes).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    module.push(0);
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        module.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    module.extend_from_slice(&payload);
    module
}

/// Compile bombs are killed at their limits: the one that would take
/// gigabytes at the memory limit, the one that would take minutes at the
/// time limit, with the host's own memory untouched and another tenant's
/// upload answered meanwhile as if nothing happened.
#[test]
fn compile_bombs_are_killed_at_their_limits_and_nobody_waits_for_them() {
    let _one = serial();
    let k = Broker::shared().scope();
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());
    // A first upload, so what the host keeps for good (the engine, the
    // caches) is counted before.
    assert_eq!(
        upload(&host, ACME, padded_upper(10, 1)).0,
        StatusCode::CREATED
    );
    let before = host.peak_rss();
    for (what, bomb, says) in [
        ("memory", memory_bomb(4000, 40000), "MiB a compile may use"),
        ("time", time_bomb(4000, 200), "s of CPU time a compile may"),
    ] {
        let started = Instant::now();
        let attack = std::thread::scope(|s| {
            let attack = s.spawn(|| upload(&host, EVIL, bomb));
            // Another tenant's upload meanwhile.
            std::thread::sleep(Duration::from_millis(300));
            let sent = Instant::now();
            let (code, up) = upload(
                &host,
                ACME,
                padded_upper(10, started.elapsed().as_nanos() as u64),
            );
            assert_eq!(code, StatusCode::CREATED, "{up}");
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "acme's upload took {:?} beside the {what} bomb",
                sent.elapsed()
            );
            attack.join().unwrap()
        });
        let took = started.elapsed();
        let (code, answer) = attack;
        assert_eq!(
            code,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what} bomb: {answer}"
        );
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(says) || message.contains("did not compile within 2 s"),
            "{what} bomb: {message}"
        );
        assert!(
            took < Duration::from_secs(20),
            "the {what} bomb was answered after {took:?}"
        );
    }
    let grown = host.peak_rss().saturating_sub(before);
    assert!(
        grown < 150 << 20,
        "the host grew by {} MiB while compiles were bombed",
        grown >> 20
    );
}

/// A module that takes a while to compile on another host (a JavaScript
/// component, ~7 s) holds back no other change there: another tenant's
/// upgrade and pause are applied on that host within 5 s meanwhile.
#[test]
fn a_slow_compile_on_another_host_holds_back_no_other_change() {
    let _one = serial();
    let k = Broker::shared().scope();
    for t in [
        "acme.in",
        "acme.out",
        "acme.out.dlq",
        "evil.in",
        "evil.out",
        "evil.out.dlq",
    ] {
        k.create_topic(t, 2);
    }
    // JavaScript compiles in ~7 s: room for it.
    let config = config()
        .replace("seconds = 2", "seconds = 120")
        .replace("memory_mb = 1024,", "memory_mb = 2048,");
    let dir = tempfile::tempdir().unwrap();
    let a = start_host(&dir.path().join("a"), &k, &config);
    let b = start_host(&dir.path().join("b"), &k, &config);
    let spec = |t: &str| json!({ "inputs": [k.name(&format!("{t}.in"))], "output": k.name(&format!("{t}.out")) });
    deploy(&a, ACME, "shout", padded_upper(10, 1), spec("acme"));
    let on_b = |field: &str| {
        call(&b, Method::GET, "/v1/deployments/shout", ACME, None).1["host"][field].clone()
    };
    eventually(
        "acme's deployment running on the second host",
        60,
        &b,
        || {
            on_b("partitions")
                .as_array()
                .is_some_and(|p| !p.is_empty())
                .then_some(())
        },
    );
    let slow = std::fs::read(component("js", "upper")).unwrap();
    deploy(&a, EVIL, "slow", slow, spec("evil"));
    let compiling = || {
        call(&b, Method::GET, "/v1/deployments/slow", EVIL, None).1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("compiling")
    };
    eventually("the second host compiling evil's module", 30, &b, || {
        compiling().then_some(())
    });

    // An upgrade: a module the second host compiles too, beside evil's.
    let (code, up) = upload(&a, ACME, padded_upper(10, 2));
    assert_eq!(code, StatusCode::CREATED, "{up}");
    let mut next = spec("acme");
    next["module"] = up["module"].clone();
    let sent = Instant::now();
    let (code, v) = call(
        &a,
        Method::PUT,
        "/v1/deployments/shout",
        ACME,
        Some(serde_json::to_vec(&next).unwrap()),
    );
    assert_eq!(code, StatusCode::OK, "{v}");
    eventually("the upgrade on the second host", 5, &b, || {
        (on_b("module") == up["module"]).then_some(())
    });
    assert!(
        sent.elapsed() < Duration::from_secs(5) && compiling(),
        "applied in {:?}, with evil's compile still running",
        sent.elapsed()
    );
    let sent = Instant::now();
    let (code, v) = call(&a, Method::POST, "/v1/deployments/shout/pause", ACME, None);
    assert_eq!(code, StatusCode::OK, "{v}");
    eventually("the pause on the second host", 5, &b, || {
        on_b("partitions").is_null().then_some(())
    });
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "paused on the second host after {:?}",
        sent.elapsed()
    );
    // And evil's deployment does start there, once compiled.
    eventually(
        "evil's deployment running on the second host",
        60,
        &b,
        || {
            call(&b, Method::GET, "/v1/deployments/slow", EVIL, None).1["host"]["partitions"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
                .then_some(())
        },
    );
}

fn instances(host: &Weir, tenant: &str) -> i64 {
    let prefix = format!("weir_tenant_instances{{tenant=\"{tenant}\"}} ");
    host.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The instance pool is a tenant resource: a component that would take
/// thousands of its slots is refused at upload, naming the limit; a tenant
/// with more deployments than its share runs them in turn within it
/// (nothing dead-lettered) while another tenant deploys and runs; slots
/// come back when deployments go.
#[test]
fn the_instance_pool_is_held_in_tenants_shares_and_given_back() {
    let _one = serial();
    let k = Broker::shared().scope();
    for t in ["acme.in", "acme.out", "acme.out.dlq", "evil.in"] {
        k.create_topic(t, 4);
    }
    for name in ["one", "two", "three"] {
        k.create_topic(&format!("evil.{name}"), 4);
        k.create_topic(&format!("evil.{name}.dlq"), 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());

    // 985 instances of a module of 4 tables and 2 memories, in one component.
    let mut hog = String::from(
        "(component (core module $m (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (memory 1) (memory 1))\n",
    );
    for _ in 0..985 {
        hog += "(core instance (instantiate $m))\n";
    }
    hog += ")";
    let (code, answer) = upload(&host, EVIL, wat::parse_str(&hog).unwrap());
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("exceeds the configured maximum"),
        "{answer}"
    );

    // Three deployments want an instance on each worker; evil's share is
    // 2. They run in turn, within the share; no record fails for it. The
    // third is deployed once the first two hold the share: its check
    // does not wait for them.
    let spec = |t: &str| json!({ "inputs": [k.name(&format!("{t}.in"))], "output": k.name(&format!("{t}.out")) });
    let evil_spec = |name: &str| json!({ "inputs": [k.name("evil.in")], "output": k.name(&format!("evil.{name}")) });
    deploy(&host, EVIL, "one", padded_upper(10, 10), evil_spec("one"));
    deploy(&host, EVIL, "two", padded_upper(10, 11), evil_spec("two"));
    let records: Vec<Rec> = (0..400)
        .map(|i| Rec::new(&format!("k{i}"), &format!("r{i}")))
        .collect();
    k.produce("evil.in", &records);
    eventually("evil's share held", 60, &host, || {
        (instances(&host, "evil") == 2).then_some(())
    });
    deploy(
        &host,
        EVIL,
        "three",
        padded_upper(10, 12),
        evil_spec("three"),
    );
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let most = std::thread::scope(|s| {
        // A failed assertion below must stop the sampler, or the scope
        // would wait for it forever.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = Stop(&sampling);
        let sampler = s.spawn(|| {
            let mut most = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(instances(&host, "evil"));
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        });
        // Acme deploys and runs meanwhile.
        deploy(&host, ACME, "fine", padded_upper(10, 1), spec("acme"));
        k.produce("acme.in", &records);
        assert_eq!(
            k.read("acme.out", 400, Duration::from_secs(60)).len(),
            400,
            "log:\n{}",
            host.log_text()
        );
        for name in ["one", "two", "three"] {
            let out = k.read(&format!("evil.{name}"), 400, Duration::from_secs(90));
            let mut seen: Vec<&str> = out.iter().map(|r| r.value_str()).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(
                seen.len(),
                400,
                "{name}: every record through; log:\n{}",
                host.log_text()
            );
            assert!(
                k.read(&format!("evil.{name}.dlq"), 1, Duration::from_secs(1))
                    .is_empty(),
                "a full share is no record's failure"
            );
        }
        drop(stop);
        sampler.join().unwrap()
    });
    assert!(most <= 2, "evil held {most} instances, more than its share");
    for name in ["one", "two"] {
        let (code, v) = call(
            &host,
            Method::DELETE,
            &format!("/v1/deployments/{name}?drop_state=true"),
            EVIL,
            None,
        );
        assert!(code.is_success(), "{v}");
    }
    let (code, v) = call(
        &host,
        Method::DELETE,
        "/v1/deployments/three?drop_state=true",
        EVIL,
        None,
    );
    assert!(code.is_success(), "{v}");
    eventually("evil's instances given back", 30, &host, || {
        (instances(&host, "evil") == 0).then_some(())
    });
}

/// What a tenant stores is under quota: modules by count and by bytes,
/// refused at upload naming the quota.
#[test]
fn module_storage_is_under_quota() {
    let _one = serial();
    let k = Broker::shared().scope();
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());
    // 20 MiB of a 30 MiB storage quota; the same module again is free.
    assert_eq!(
        upload(&host, EVIL, padded_upper(20 << 20, 1)).0,
        StatusCode::CREATED
    );
    assert_eq!(
        upload(&host, EVIL, padded_upper(20 << 20, 1)).0,
        StatusCode::CREATED,
        "a module it has counts once"
    );
    let (code, answer) = upload(&host, EVIL, padded_upper(12 << 20, 2));
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("max_module_storage_mb"),
        "{answer}"
    );
    for seed in 3..6 {
        assert_eq!(
            upload(&host, EVIL, padded_upper(10, seed)).0,
            StatusCode::CREATED
        );
    }
    let (code, answer) = upload(&host, EVIL, padded_upper(10, 9));
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("max_modules"),
        "{answer}"
    );
    // Acme's quota is its own.
    assert_eq!(
        upload(&host, ACME, padded_upper(10, 9)).0,
        StatusCode::CREATED
    );
}

fn gauge(host: &Weir, line: &str) -> u64 {
    host.metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix(line)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0) as u64
}

/// A backlog of large records before deployments too slow for it stays
/// within the tenant's buffer budget (4 MiB here), where each partition's
/// own limit (64 MiB) would have let it buffer them all.
#[test]
fn buffered_input_stays_within_the_tenants_budget() {
    let _one = serial();
    let k = Broker::shared().scope();
    for t in ["evil.in", "evil.out", "evil.out.dlq"] {
        k.create_topic(t, 4);
    }
    let value = "x".repeat(100 << 10);
    let records: Vec<Rec> = (0..400)
        .map(|i| Rec::new(&format!("k{i}"), &format!("spin {i} {value}")))
        .collect();
    k.produce("evil.in", &records);
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());
    // Spins to the CPU limit on every record: a record every 100 ms.
    let spec = json!({ "inputs": [k.name("evil.in")], "output": k.name("evil.out"), "config": { "trigger": "spin" } });
    for name in ["a", "b"] {
        deploy(
            &host,
            EVIL,
            name,
            std::fs::read(plugin("hostile-loop")).unwrap(),
            spec.clone(),
        );
    }
    let line = "weir_tenant_buffered_bytes{tenant=\"evil\"} ";
    eventually("evil's input buffered", 60, &host, || {
        (gauge(&host, line) > 1 << 20).then_some(())
    });
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        most = most.max(gauge(&host, line));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The budget, and a batch per partition that may always fill: 8
    // partitions of two deployments, a batch of 1 MiB and a record each.
    let bound = (4 << 20) + 8 * ((1 << 20) + (100 << 10));
    assert!(
        most <= bound,
        "evil buffered {most} bytes, more than {bound}"
    );
    assert!(gauge(&host, "weir_host_buffered_bytes ") <= bound);
}

/// What a deployment costs a host in memory, at its worst: a guest that
/// fills its linear memory (`memory_mb`) on some records, on a backlog of
/// large records, on every worker. Each deployment stays within
/// `workers` × `memory_mb` (an instance per worker), 16 MiB its consumer
/// may prefetch and a fixed 32 MiB (its clients, threads, stores and
/// module), beside the tenant's buffer budget.
#[test]
fn memory_per_deployment_stays_within_its_bound() {
    let _one = serial();
    let k = Broker::shared().scope();
    let names = ["m1", "m2", "m3"];
    k.create_topic("evil.in", 4);
    for name in names {
        k.create_topic(&format!("evil.{name}"), 1);
        k.create_topic(&format!("evil.{name}.dlq"), 1);
    }
    let value = "x".repeat(100 << 10);
    let records: Vec<Rec> = (0..120)
        .map(|i| {
            Rec::new(
                &format!("k{i}"),
                &format!("{} {i} {value}", if i % 20 == 0 { "hog" } else { "ok" }),
            )
        })
        .collect();
    k.produce("evil.in", &records);
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path(), &k, &config());
    // The host with its clients up, and the module compiled and loaded.
    let memory_mb = 32;
    let spec = |name: &str| json!({ "inputs": [k.name("evil.in")], "output": k.name(&format!("evil.{name}")), "limits": { "memory_mb": memory_mb }, "config": { "trigger": "hog" } });
    let module = std::fs::read(plugin("hostile-memory")).unwrap();
    let (code, up) = upload(&host, EVIL, module.clone());
    assert_eq!(code, StatusCode::CREATED, "{up}");
    std::thread::sleep(Duration::from_secs(2));
    let before = host.peak_rss();
    for name in names {
        deploy(&host, EVIL, name, module.clone(), spec(name));
    }
    for name in names {
        assert_eq!(
            k.read(&format!("evil.{name}"), 114, Duration::from_secs(120))
                .len(),
            114,
            "log:\n{}",
            host.log_text()
        );
        assert_eq!(
            k.read(&format!("evil.{name}.dlq"), 6, Duration::from_secs(30))
                .len(),
            6
        );
    }
    let grown = host.peak_rss().saturating_sub(before) >> 20;
    let per_deployment = 2 * memory_mb + 16 + 32;
    // The tenant's buffer budget, and a record each of 4 partitions.
    let bound = names.len() as u64 * per_deployment + 4 + 4;
    eprintln!(
        "memory: peak RSS grew {grown} MiB for {} deployments (bound {bound} MiB)",
        names.len()
    );
    assert!(
        grown <= bound,
        "the host grew {grown} MiB for {} deployments, more than {bound} MiB",
        names.len()
    );
}

/// Stalls show: an input held back by a transaction left open (in the
/// status, with its offset and age, and a metric), and, with the broker
/// hanging, a producer that delivers nothing (in `/health`); a SIGTERM
/// then ends the host within its shutdown timeout whatever the broker
/// does, and after all that nothing is lost.
#[test]
fn stalls_show_and_a_hanging_broker_does_not_hold_a_shutdown() {
    let _one = serial();
    let mut broker = Broker::dedicated();
    let k = broker.scope();
    for t in ["in", "out", "held", "held.out", "upper.dlq", "hold.dlq"] {
        k.create_topic(t, 1);
    }
    let deployments = weir_tests::kafka::deployment("upper", "upper", "in", "out", "")
        + &weir_tests::kafka::deployment("hold", "upper", "held", "held.out", "");
    let config =
        weir_tests::kafka::host_config(&format!("shutdown_timeout_ms = 5000\n{deployments}"));
    let dir = tempfile::tempdir().unwrap();
    let mut host = Weir::start(dir.path(), &k, &config);
    host.wait_partitions("hold", 1);

    // A transaction left open on `held`, after a record that gets through.
    k.produce("held", &[Rec::new("k", "before")]);
    let open = k.begin_transaction("open");
    open.produce("held", &[Rec::new("k", "held")]);
    let held = eventually("the held input in the status", 60, &host, || {
        let h = host.health()?;
        let held = &h["deployments"]["hold"]["held"]["0"];
        held.is_object().then(|| held.clone())
    });
    assert_eq!(held["offset"], 1, "{held}");
    eventually("its age as a metric", 30, &host, || {
        host.metrics()
            .lines()
            .any(|l| {
                l.starts_with("weir_open_transaction_seconds{deployment=\"hold\"")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    });
    open.commit();
    eventually("the held input cleared", 30, &host, || {
        host.health()?["deployments"]["hold"]["held"]
            .is_null()
            .then_some(())
    });

    // The broker hangs while records are on their way out.
    let base = now_ms();
    let records: Vec<Rec> = (0..200_000)
        .map(|i| Rec {
            timestamp: Some(base + i),
            ..Rec::new(&format!("k{i}"), &format!("v{i}"))
        })
        .collect();
    k.produce("in", &records);
    eventually("records on their way", 60, &host, || {
        (gauge(
            &host,
            "weir_records_out_total{deployment=\"upper\",partition=\"0\",tenant=\"\"} ",
        ) > 1_000)
            .then_some(())
    });
    broker.freeze();
    let stalled = eventually("the stuck producer in /health", 60, &host, || {
        let h = host.health()?;
        h["producer"]
            .as_str()
            .map(|p| (h["status"].clone(), p.to_owned()))
    });
    assert_eq!(stalled.0, "degraded", "{stalled:?}");
    assert!(stalled.1.contains("delivered nothing"), "{stalled:?}");
    let asked = Instant::now();
    let status = host.terminate();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "SIGTERM took {:?} with the broker hanging ({status})",
        asked.elapsed()
    );
    broker.thaw();

    // Restarted, the host finishes the job: every record through.
    host.restart();
    // At least once: a record may come twice, none may be missing.
    let mut seen = std::collections::HashSet::new();
    k.read_until("out", Duration::from_secs(120), |o| {
        if let Some(r) = o.last() {
            seen.insert(r.value_str().to_owned());
        }
        seen.len() >= records.len()
    });
    assert_eq!(
        seen.len(),
        records.len(),
        "records lost; log:\n{}",
        host.log_text()
    );
}
