//! `weir bench`: the benchmarks of BENCHMARKS.md, printed as its tables.
//!
//! (Over 400 lines: one entry per benchmark, each printing the table BENCHMARKS.md shows.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// In-process dispatch through a stateless map plugin vs. a native closure.
    Dispatch {
        /// An upper-casing map plugin (plugins/rust/upper).
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
    },
    /// End to end on a broker: `weir run`'s pipeline with a stateless plugin
    /// vs. a raw consume→produce passthrough, same broker, same run.
    Pipeline {
        #[arg(long)]
        brokers: String,
        /// A stateless map plugin (plugins/rust/upper).
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// The cost of record formats: Avro orders decoded, reshaped field by
    /// field (`reshape`) and encoded, vs. the same records as raw bytes
    /// through `upper`, and vs. Quix Streams with its Avro serializers
    /// (given `--quix-python`), on one broker and registry, `--rounds`
    /// times.
    Formats {
        #[arg(long)]
        brokers: String,
        /// The schema registry's Confluent API (Apicurio's `/apis/ccompat/v7`).
        #[arg(long)]
        registry: String,
        /// The Rust plugins' build output (upper.wasm, reshape.wasm).
        #[arg(long)]
        plugins: PathBuf,
        /// A Python with `quixstreams` (e.g. a venv's bin/python).
        #[arg(long)]
        quix_python: Option<PathBuf>,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The cost of a secured listener: `pipeline` over plaintext and over
    /// the `[kafka]` table of `--config` (a SASL_SSL listener of the same
    /// broker, say), alternately, `--rounds` times.
    Secure {
        /// The broker's plaintext listener.
        #[arg(long)]
        brokers: String,
        /// A `weir run` config whose `[kafka]` table reaches the same broker
        /// through its secured listener.
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Weir vs. Kafka Streams on the same input and broker: a stateless map
    /// and a tumbling 1 s window count (final results), beside the raw
    /// consume→produce relay.
    Streams {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (upper.wasm, window_count.wasm).
        #[arg(long)]
        plugins: PathBuf,
        /// The Kafka Streams program, as `scripts/setup --test` builds it
        /// (default: $WEIR_CACHE/kafka-streams-bench).
        #[arg(long)]
        kafka_streams: Option<PathBuf>,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// What exactly-once costs: Weir at-least-once and exactly-once at
    /// commit intervals of 100 ms and 1 s (a map and a tumbling count),
    /// beside Kafka Streams under exactly_once_v2: records/s until every
    /// output is visible to read_committed readers, and a steady stream's
    /// latency.
    Delivery {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (upper.wasm, window_count.wasm).
        #[arg(long)]
        plugins: PathBuf,
        /// The Kafka Streams program (default: $WEIR_CACHE/kafka-streams-bench).
        #[arg(long)]
        kafka_streams: Option<PathBuf>,
        #[arg(long, default_value_t = 300_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// One tenant's throughput alone vs. beside a tenant running every
    /// hostile plugin, on one host and a real broker.
    Tenants {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (upper.wasm, hostile_*.wasm).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, default_value_t = 500_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// In-process stateful throughput (RocksDB state): stateless map vs.
    /// word count vs. tumbling window count over many keys.
    State {
        /// The directory holding upper.wasm, word_count.wasm and
        /// window_count.wasm (the plugins' build output).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, default_value_t = 1_200_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
    },
    /// Per-language cost: component size, compile time cold and from the
    /// artifact cache, stateful throughput of the map, the word count and the inactivity alert (a timer per record).
    Languages {
        /// Holds <lang>/upper.wasm, <lang>/word-count.wasm and, optionally,
        /// <lang>/inactivity.wasm (state and a timer per record)
        /// (`scripts/build-plugins` writes $CARGO_TARGET_DIR/plugins).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "rust,python,js,c")]
        langs: Vec<String>,
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
    },
    /// A stream-table join (the enrich plugin, a table of customers) vs. the
    /// upper map over the same orders, on a broker; and the table's load
    /// time from its topic and, after a restart, from the host's store.
    Join {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (upper.wasm, enrich.wasm).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        table_keys: usize,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// The tumbling window count over two co-partitioned inputs whose
    /// records interleave in time (processed in timestamp order) vs. the
    /// same records in one input.
    Order {
        #[arg(long)]
        brokers: String,
        /// The Rust plugins' build output (window_count.wasm).
        #[arg(long)]
        plugins: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// A host killed with SIGKILL and started again at once, `--rounds`
    /// times: the time from each restart to its first new output.
    Restart {
        #[arg(long)]
        brokers: String,
        /// An upper-casing map plugin (plugins/rust/upper).
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value_t = 4)]
        partitions: usize,
    },
    /// State restore from a changelog into RocksDB vs. a bare consumer
    /// reading the same records.
    Restore {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
}

pub fn bench(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Dispatch {
            plugin,
            records,
            value_bytes,
        } => {
            let rows = weir::bench::dispatch(&plugin, records, value_bytes)?;
            println!(
                "| batch | Weir (wasm) records/s | native closure records/s | wasm / native |"
            );
            println!(
                "|------:|----------------------:|-------------------------:|--------------:|"
            );
            for r in rows {
                println!(
                    "| {} | {:.0} | {:.0} | {:.2} |",
                    r.batch,
                    r.wasm_per_sec,
                    r.native_per_sec,
                    r.wasm_per_sec / r.native_per_sec
                );
            }
        }
        BenchCommand::Pipeline {
            brokers,
            plugin,
            records,
            partitions,
        } => {
            let r = weir::bench::pipeline(&brokers, &plugin, records, partitions)?;
            println!(
                "| records | raw passthrough records/s | Weir (upper plugin) records/s | Weir / raw | CPU µs/record, raw: process, machine | Weir: process, machine |"
            );
            println!("|--:|--:|--:|--:|--:|--:|");
            let us = |cpu: &weir::bench::CpuUse| {
                let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
                format!(
                    "{}, {}",
                    show(cpu.process_us_per(r.records)),
                    show(cpu.machine_us_per(r.records))
                )
            };
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {} | {} |",
                r.records,
                r.raw_per_sec,
                r.weir_per_sec,
                r.weir_per_sec / r.raw_per_sec,
                us(&r.raw_cpu),
                us(&r.weir_cpu)
            );
        }
        BenchCommand::Formats {
            brokers,
            registry,
            plugins,
            quix_python,
            records,
            partitions,
            rounds,
        } => {
            let rows = weir::bench::formats::formats(
                &brokers,
                &registry,
                &plugins,
                quix_python.as_deref(),
                records,
                partitions,
                rounds,
            )?;
            println!(
                "| round | records | raw bytes (upper) records/s | Avro in and out (reshape) records/s | Avro / raw | Quix Streams records/s | Weir Avro / Quix |"
            );
            println!("|--:|--:|--:|--:|--:|--:|--:|");
            for r in rows {
                let quix = r.quix_per_sec.map_or("-".into(), |q| format!("{q:.0}"));
                let ratio = r
                    .quix_per_sec
                    .map_or("-".into(), |q| format!("{:.1}", r.avro_per_sec / q));
                println!(
                    "| {} | {records} | {:.0} | {:.0} | {:.2} | {quix} | {ratio} |",
                    r.round,
                    r.raw_per_sec,
                    r.avro_per_sec,
                    r.avro_per_sec / r.raw_per_sec
                );
            }
        }
        BenchCommand::Secure {
            brokers,
            config,
            plugin,
            records,
            partitions,
            rounds,
        } => {
            let secure =
                weir_control::config::Config::load(&config, std::env::vars(), &Default::default())?
                    .kafka;
            let plain = weir_control::config::KafkaConfig {
                brokers,
                ..Default::default()
            };
            println!(
                "| round | listener | raw passthrough records/s | Weir (upper plugin) records/s | Weir / raw |"
            );
            println!(
                "|------:|:---------|--------------------------:|------------------------------:|-----------:|"
            );
            for round in 1..=rounds {
                for (name, kafka) in [("plaintext", &plain), ("secured", &secure)] {
                    let r = weir::bench::pipeline_on(kafka, &plugin, records, partitions)?;
                    println!(
                        "| {round} | {name} | {:.0} | {:.0} | {:.2} |",
                        r.raw_per_sec,
                        r.weir_per_sec,
                        r.weir_per_sec / r.raw_per_sec
                    );
                }
            }
        }
        BenchCommand::Streams {
            brokers,
            plugins,
            kafka_streams,
            records,
            keys,
            partitions,
        } => {
            let rows = weir::bench::streams::streams(
                &brokers,
                &plugins,
                &kafka_streams_dir(kafka_streams)?,
                records,
                keys,
                partitions,
            )?;
            println!(
                "| workload | records | outputs | raw relay records/s | Weir records/s | Kafka Streams records/s | Weir / Kafka Streams | Weir / raw |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---:|");
            for r in rows {
                println!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
                    r.workload,
                    r.records,
                    r.outputs,
                    r.raw_per_sec,
                    r.weir_per_sec,
                    r.kafka_streams_per_sec,
                    r.weir_per_sec / r.kafka_streams_per_sec,
                    r.weir_per_sec / r.raw_per_sec
                );
            }
        }
        BenchCommand::Delivery {
            brokers,
            plugins,
            kafka_streams,
            records,
            keys,
            partitions,
        } => {
            let rows = weir::bench::delivery::delivery(
                &brokers,
                &plugins,
                &kafka_streams_dir(kafka_streams)?,
                records,
                keys,
                partitions,
            )?;
            let ms = |l: &Option<weir::bench::Latency>| {
                l.as_ref().map_or("-".to_owned(), |l| {
                    format!("{} / {} ms", l.p50.as_millis(), l.p99.as_millis())
                })
            };
            let at_least_once = |r: &weir::bench::delivery::DeliveryRow| {
                rows.iter()
                    .find(|a| {
                        a.workload == r.workload
                            && a.commit_ms == r.commit_ms
                            && a.delivery.as_str() == "at-least-once"
                    })
                    .map_or(f64::NAN, |a| a.weir_per_sec)
            };
            println!(
                "| workload | delivery | commit interval | Weir records/s | / at-least-once | Kafka Streams records/s | Weir / Kafka Streams | steady 1000/s p50 / p99, Weir | Kafka Streams |"
            );
            println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
            for r in &rows {
                let ks = r
                    .kafka_streams_per_sec
                    .map_or("-".to_owned(), |k| format!("{k:.0}"));
                let ratio = r
                    .kafka_streams_per_sec
                    .map_or("-".to_owned(), |k| format!("{:.2}", r.weir_per_sec / k));
                println!(
                    "| {} | {} | {} ms | {:.0} | {:.2} | {ks} | {ratio} | {} | {} |",
                    r.workload,
                    r.delivery.as_str(),
                    r.commit_ms,
                    r.weir_per_sec,
                    r.weir_per_sec / at_least_once(r),
                    ms(&r.weir_latency),
                    ms(&r.kafka_streams_latency)
                );
            }
        }
        BenchCommand::Tenants {
            brokers,
            plugins,
            records,
            partitions,
        } => {
            let r = weir::bench::tenants(&brokers, &plugins, records, partitions)?;
            println!(
                "| records | good tenant alone records/s | beside the hostile tenant records/s | shared / alone | hostile records failed meanwhile | steady stream p50 / p99 alone | beside | peak RSS |"
            );
            println!(
                "|--------:|----------------------------:|------------------------------------:|---------------:|---------------------------------:|---:|---:|---:|"
            );
            let ms = |l: &weir::bench::Latency| {
                format!("{} ms / {} ms", l.p50.as_millis(), l.p99.as_millis())
            };
            println!(
                "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} MiB |",
                r.records,
                r.alone_per_sec,
                r.shared_per_sec,
                r.shared_per_sec / r.alone_per_sec,
                r.hostile_failures,
                ms(&r.latency_alone),
                ms(&r.latency_beside),
                r.peak_rss >> 20
            );
        }
        BenchCommand::Languages {
            plugins,
            langs,
            records,
            keys,
        } => {
            let rows = weir::bench::languages(&plugins, &langs, records, keys)?;
            println!(
                "| language | plugin | component bytes | compile cold | load from cache | records/s (one thread, RocksDB state) |"
            );
            println!(
                "|----------|--------|----------------:|-------------:|----------------:|--------------------------------------:|"
            );
            for r in rows {
                println!(
                    "| {} | {} | {} | {:.2} s | {:.1} ms | {:.0} |",
                    r.lang,
                    r.plugin,
                    r.size,
                    r.compile_cold.as_secs_f64(),
                    r.load_cached.as_secs_f64() * 1e3,
                    r.per_sec
                );
            }
        }
        BenchCommand::State {
            plugins,
            records,
            keys,
        } => {
            let rows = weir::bench::state(&plugins, records, keys)?;
            let base = rows[0].per_sec;
            println!(
                "| transform ({records} records, {keys} keys, one thread) | records/s | vs. stateless map |"
            );
            println!("|---|---:|---:|");
            for r in rows {
                println!(
                    "| {} | {:.0} | {:.2} |",
                    r.name,
                    r.per_sec,
                    r.per_sec / base
                );
            }
        }
        BenchCommand::Join {
            brokers,
            plugins,
            table_keys,
            records,
            partitions,
        } => {
            let r = weir::bench::join(&brokers, &plugins, table_keys, records, partitions)?;
            println!(
                "| table keys | orders | map records/s | join records/s (RocksDB lookups) | join / map (RocksDB) | table load from its topic | again after a restart |"
            );
            println!("|---:|---:|---:|---:|---:|---:|---:|");
            println!(
                "| {} | {} | {:.0} | {:.0} ({:.0}) | {:.2} ({:.2}) | {:.1} s ({:.0} keys/s) | {:.2} s |",
                r.table_keys,
                r.records,
                r.map_per_sec,
                r.join_per_sec,
                r.join_rocksdb_per_sec,
                r.join_per_sec / r.map_per_sec,
                r.join_rocksdb_per_sec / r.map_per_sec,
                r.load.as_secs_f64(),
                r.table_keys as f64 / r.load.as_secs_f64(),
                r.reload.as_secs_f64()
            );
        }
        BenchCommand::Order {
            brokers,
            plugins,
            records,
            keys,
            partitions,
        } => {
            let r = weir::bench::order(&brokers, &plugins, records, keys, partitions)?;
            println!(
                "| records | one input records/s | two interleaved inputs records/s | two / one |"
            );
            println!("|---:|---:|---:|---:|");
            println!(
                "| {} | {:.0} | {:.0} | {:.2} |",
                r.records,
                r.one_input_per_sec,
                r.two_inputs_per_sec,
                r.two_inputs_per_sec / r.one_input_per_sec
            );
        }
        BenchCommand::Restart {
            brokers,
            plugin,
            rounds,
            partitions,
        } => {
            let r = weir::bench::restart(&brokers, &plugin, rounds, partitions)?;
            println!("| start | first output after |");
            println!("|---|---:|");
            println!("| first | {:.1} s |", r.first_start.as_secs_f64());
            for (i, d) in r.restarts.iter().enumerate() {
                println!("| after kill -9 #{} | {:.1} s |", i + 1, d.as_secs_f64());
            }
        }
        BenchCommand::Restore { brokers, keys } => {
            let r = weir::bench::restore(&brokers, keys)?;
            println!("| keys | bare consumer records/s | Weir restore keys/s | restore / read |");
            println!("|-----:|------------------------:|--------------------:|---------------:|");
            println!(
                "| {} | {:.0} | {:.0} | {:.2} |",
                r.keys,
                r.read_per_sec,
                r.restore_per_sec,
                r.restore_per_sec / r.read_per_sec
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `scripts/setup --test` builds the Kafka Streams program, unless given.
fn kafka_streams_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(d) => Ok(d),
        None => Ok(std::env::var_os("WEIR_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
            .context("set WEIR_CACHE or pass --kafka-streams")?
            .join("kafka-streams-bench")),
    }
}
