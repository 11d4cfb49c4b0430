//! A real Kafka-protocol broker (nisshi) on loopback, an independent
//! rdkafka client to produce and read records, and `weir run` as a separate
//! process. Everything started is stopped by pid when dropped.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nisshi() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_NISSHI") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("WEIR_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir"));
    let p = cache.join("tools/bin/nisshi");
    assert!(p.exists(), "the nisshi broker is not installed at {}: run scripts/test (or scripts/setup --test), or set WEIR_NISSHI", p.display());
    p
}

/// Sends SIGKILL (or SIGTERM) to a child by pid and reaps it.
fn signal(child: &mut Child, sig: i32) {
    unsafe { libc::kill(child.id() as i32, sig) };
    if sig == libc::SIGKILL {
        let _ = child.wait();
    }
}

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    client: Client,
    storage: String,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Broker {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// An independent Kafka client of a broker (not Weir's code).
#[derive(Clone)]
pub struct Client {
    pub bootstrap: String,
}

impl Broker {
    /// A broker keeping data in memory.
    pub fn start() -> Broker {
        Self::with_storage(|_| "memory://nisshi/".to_owned())
    }

    /// A broker keeping data in SQLite, so it survives a broker restart.
    pub fn start_persistent() -> Broker {
        Self::with_storage(|_| "sqlite://broker.db".to_owned()) // relative to the broker's working directory
    }

    fn with_storage(storage: impl FnOnce(&Path) -> String) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut b = Broker { child: None, port, client: Client { bootstrap: format!("127.0.0.1:{port}") }, storage: storage(dir.path()), dir };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("broker.log")).unwrap();
        let child = Command::new(nisshi())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", &self.storage])
            .args(["--group-initial-rebalance-delay", "200ms"])
            .current_dir(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting nisshi");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nisshi did not listen on port {} within 30 s; log:\n{}", self.port, std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
        // Ready when it answers metadata.
        let c: BaseConsumer = self.client().create().unwrap();
        c.fetch_metadata(None, Duration::from_secs(20)).expect("nisshi answers metadata");
    }

    /// Kills the broker process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, libc::SIGKILL);
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Client {
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let r = futures::executor::block_on(admin.create_topics([&t], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))).unwrap();
        for x in r {
            x.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Produces records with an independent idempotent producer and waits
    /// for every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[Rec]) {
        let p: BaseProducer = self.client().set("enable.idempotence", "true").set("linger.ms", "5").set("queue.buffering.max.messages", "500000").create().unwrap();
        for r in records {
            let mut rec = BaseRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            if let Some(part) = r.partition {
                rec = rec.partition(part);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    h = h.insert(Header { key: k, value: v.as_deref() });
                }
                rec = rec.headers(h);
            }
            if let Some(ts) = r.timestamp {
                rec = rec.timestamp(ts);
            }
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(60)).expect("all records acknowledged");
    }

    /// Reads every partition of `topic` from the beginning (no consumer
    /// group) until `expected` records arrived or `timeout` passed.
    pub fn read(&self, topic: &str, expected: usize, timeout: Duration) -> Vec<Rec> {
        self.read_until(topic, timeout, |out| out.len() >= expected)
    }

    /// Reads every partition of `topic` from the beginning until `done`
    /// holds for what was read so far (checked after every record and
    /// whenever none arrives for 100 ms) or `timeout` passed.
    pub fn read_until(&self, topic: &str, timeout: Duration, mut done: impl FnMut(&[Rec]) -> bool) -> Vec<Rec> {
        let c: BaseConsumer = self.client().set("group.id", "weir-test-reader").set("enable.auto.commit", "false").create().unwrap();
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
        }
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                if done(&out) {
                    break;
                }
                continue;
            };
            out.push(Rec {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m.headers().map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect()).unwrap_or_default(),
                partition: Some(m.partition()),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
            });
            if done(&out) {
                break;
            }
        }
        out
    }

    /// Committed offsets of `group` on `topic`'s partitions (-1: none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = self.client().set("group.id", group).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { -1 }).collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A record as produced or read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub partition: Option<i32>,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

impl Rec {
    pub fn new(key: &str, value: &str) -> Rec {
        Rec { key: Some(key.into()), value: Some(value.into()), ..Rec::default() }
    }

    pub fn key_str(&self) -> &str {
        std::str::from_utf8(self.key.as_deref().unwrap_or_default()).unwrap()
    }

    pub fn value_str(&self) -> &str {
        std::str::from_utf8(self.value.as_deref().unwrap_or_default()).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref()).map(|v| std::str::from_utf8(v).unwrap())
    }
}

/// `weir run` as a separate process, with its own state directory.
pub struct Weir {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub log: PathBuf,
    config: PathBuf,
}

impl Weir {
    /// Writes `config` (TOML; `{brokers}`, `{state}`, `{listen}` and
    /// `{plugins}` are filled in) to `dir` and starts `weir run` on it.
    pub fn start(dir: &Path, broker: &Broker, config: &str) -> Weir {
        std::fs::create_dir_all(dir).unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let plugins = crate::plugin("upper").parent().unwrap().to_owned();
        let text = config
            .replace("{brokers}", &broker.bootstrap)
            .replace("{state}", &dir.join("state").display().to_string())
            .replace("{listen}", &listen.to_string())
            .replace("{plugins}", &plugins.display().to_string());
        let config = dir.join("weir.toml");
        std::fs::write(&config, text).unwrap();
        let mut w = Weir { child: None, listen, log: dir.join("weir.log"), config };
        w.launch();
        w
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(crate::weir_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("WEIR_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Starts the same process again after a stop or a kill.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&mut c, libc::SIGKILL);
        }
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(&mut c, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                signal(&mut c, libc::SIGKILL);
                panic!("weir did not exit within 60 s of SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "weir still running after {timeout:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn health(&self) -> Option<serde_json::Value> {
        reqwest::blocking::get(format!("http://{}/health", self.listen)).ok()?.json().ok()
    }

    pub fn metrics(&self) -> String {
        reqwest::blocking::get(format!("http://{}/metrics", self.listen)).and_then(|r| r.text()).unwrap_or_default()
    }

    /// Waits until the HTTP listener answers.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.health().is_none() {
            assert!(Instant::now() < deadline, "weir did not answer /health within 60 s; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Partitions `deployment` owns according to `/health`.
    pub fn partitions(&self, deployment: &str) -> Vec<i64> {
        self.health()
            .and_then(|h| h["deployments"][deployment]["partitions"].as_array().map(|a| a.iter().filter_map(|v| v.as_i64()).collect()))
            .unwrap_or_default()
    }

    /// Waits until `deployment` owns `n` partitions.
    pub fn wait_partitions(&self, deployment: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.partitions(deployment).len() != n {
            assert!(Instant::now() < deadline, "{deployment} did not get {n} partitions within 60 s; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Groups records by key, keeping order.
pub fn by_key(records: &[Rec]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        m.entry(r.key_str().to_owned()).or_default().push(r.value_str().to_owned());
    }
    m
}

/// One `[deployments.NAME]` table of a `weir run` config.
pub fn deployment(name: &str, plugin: &str, input: &str, output: &str, extra: &str) -> String {
    format!(
        r#"
[deployments.{name}]
plugin = "{{plugins}}/{plugin}.wasm"
inputs = ["{input}"]
output = "{output}"
{extra}
"#
    )
}

/// A `weir run` config for the deployments given (see [`Weir::start`]).
pub fn host_config(deployments: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{{brokers}}"
[host]
state_dir = "{{state}}"
listen = "{{listen}}"
commit_interval_ms = 200
{deployments}"#
    )
}

/// Now, in ms. Record timestamps stay recent: the broker deletes records
/// older than its retention (7 days) when it restarts.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Values `prefix-0 .. prefix-(n-1)` under keys `k0 .. k(keys-1)`, with a
/// sequence header and increasing timestamps.
pub fn records(prefix: &str, n: usize, keys: usize) -> Vec<Rec> {
    let base = now_ms();
    (0..n)
        .map(|i| Rec {
            key: Some(format!("k{}", i % keys).into_bytes()),
            value: Some(format!("{prefix}-{i}").into_bytes()),
            headers: vec![("seq".into(), Some(i.to_string().into_bytes())), ("null".into(), None)],
            timestamp: Some(base + i as i64),
            ..Rec::default()
        })
        .collect()
}

/// Produces `n` records to `topic` over about `seconds`, on a thread.
pub fn produce_slowly(broker: &Broker, topic: &str, all: Vec<Rec>, seconds: f64) -> std::thread::JoinHandle<()> {
    let bootstrap = broker.bootstrap.clone();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let chunks = 50;
        let size = all.len().div_ceil(chunks);
        let b = Client { bootstrap };
        for chunk in all.chunks(size) {
            b.produce(&topic, chunk);
            std::thread::sleep(Duration::from_secs_f64(seconds / chunks as f64));
        }
    })
}
