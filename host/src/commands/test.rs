//! `weir test`: a plugin over JSON Lines records, without Kafka.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use weir_abi::Limits;
use weir_abi::codec::{Part, RecordDecoding, RecordEncoding};
use weir_engine::offline::{self, TestOptions};
use weir_engine::{Engine, EngineConfig};
use weir_schema::format::{Format, Formats, PartFormat};
use weir_schema::{InputCodec, OutputCodec, Schemas};

use super::parse_key_value;

#[derive(clap::Args)]
pub struct TestArgs {
    /// The plugin component (.wasm).
    pub plugin: PathBuf,
    /// JSON Lines input, `-` for stdin.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Transform configuration, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Topic name printed for outputs to the default output topic.
    #[arg(long, default_value = "output")]
    pub output_topic: String,
    /// Topic of input records that name none.
    #[arg(long, default_value = "input")]
    pub input_topic: String,
    /// Records per call into the plugin.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Emit windows still open at the end of the input.
    #[arg(long)]
    pub flush_windows: bool,
    /// A table the plugin may open, empty unless table lines (`{"table":
    /// NAME, "key": ..., "value": ...}`) fill it; tables those lines name
    /// need no flag (repeatable).
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Linear memory limit per instance, MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// CPU time limit per call, ms.
    #[arg(long)]
    pub cpu_ms: Option<u64>,
    /// Do not read or write the compiled-module cache.
    #[arg(long)]
    pub no_cache: bool,
    /// A schema for `key`, `value`, `output_key` or `output_value`, as
    /// PART=FILE (repeatable): `.avsc` Avro, `.proto` Protobuf, `.json`
    /// JSON Schema. Inputs' JSON is encoded with it and decoded as `weir
    /// run` would; outputs must fit theirs, as in `weir run`.
    #[arg(long = "schema", value_parser = parse_key_value)]
    pub schemas: Vec<(String, String)>,
}

pub fn test(args: TestArgs) -> Result<ExitCode> {
    let text = if args.input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?
    };
    let mut lines = offline::jsonl::parse(&text)?;
    let codecs = schema_codecs(
        &args.schemas,
        &args.input_topic,
        &args.output_topic,
        &mut lines,
    )?;
    let mut config = EngineConfig {
        compiler_exe: Some(std::env::current_exe().context("locating the weir binary")?),
        ..EngineConfig::default()
    };
    if args.no_cache {
        config.cache_dir = None;
    }
    let mut limits = Limits::default();
    limits.memory_mb = args.memory_mb.unwrap_or(limits.memory_mb);
    limits.cpu_ms_per_batch = args.cpu_ms.unwrap_or(limits.cpu_ms_per_batch);
    let name = args
        .plugin
        .file_stem()
        .map_or("test".into(), |s| s.to_string_lossy().into_owned());
    let opts = TestOptions {
        name,
        config: args.config,
        limits,
        input_topic: args.input_topic,
        output_topic: args.output_topic,
        batch_size: args.batch_size,
        flush_windows: args.flush_windows,
        tables: args.tables,
        input_decoding: codecs.input,
        output_encoding: codecs.output,
    };
    let summary =
        weir_engine::on_wasm_thread(&config.clone(), "weir-test", "the test runner", move || {
            let engine = Engine::new(config)?;
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            offline::run(
                &engine,
                &args.plugin,
                &opts,
                &lines,
                &mut stdout.lock(),
                &mut stderr.lock(),
            )
        })??;
    Ok(if summary.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `--schema` makes of a run.
struct Codecs {
    input: Option<Arc<dyn RecordDecoding>>,
    output: Option<Arc<dyn RecordEncoding>>,
}

/// The codecs of `schemas` (PART=FILE), over schema files standing for a
/// registry (each input topic's subject holds the input schema, the
/// output topic's the output one), and the input lines encoded with them.
fn schema_codecs(
    schemas: &[(String, String)],
    input_topic: &str,
    output_topic: &str,
    lines: &mut [offline::jsonl::InputLine],
) -> Result<Codecs> {
    if schemas.is_empty() {
        return Ok(Codecs {
            input: None,
            output: None,
        });
    }
    let mut formats = Formats::default();
    let mut topics: Vec<String> = lines
        .iter()
        .filter(|l| l.is_record)
        .map(|l| l.topic.clone().unwrap_or_else(|| input_topic.to_owned()))
        .collect();
    topics.sort();
    topics.dedup();
    let mut files = Vec::new();
    for (part, file) in schemas {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--schema {part}: reading {file}"))?;
        let (format, kind) = match std::path::Path::new(file)
            .extension()
            .and_then(|e| e.to_str())
        {
            Some("avsc") => (Format::Avro, "AVRO"),
            Some("proto") => (Format::Protobuf, "PROTOBUF"),
            Some("json") => (Format::JsonSchema, "JSON"),
            _ => bail!(
                "--schema {part}={file}: name an .avsc (Avro), .proto (Protobuf) or .json (JSON Schema) file"
            ),
        };
        let (slot, side, subject_topics) = match part.as_str() {
            "key" => (&mut formats.key, "key", topics.clone()),
            "value" => (&mut formats.value, "value", topics.clone()),
            "output_key" => (
                &mut formats.output_key,
                "key",
                vec![output_topic.to_owned()],
            ),
            "output_value" => (
                &mut formats.output_value,
                "value",
                vec![output_topic.to_owned()],
            ),
            _ => bail!(
                "--schema {part}=...: the part is `key`, `value`, `output_key` or `output_value`"
            ),
        };
        *slot = PartFormat {
            format,
            // Outputs are checked against the file, which stands for the
            // subject's registered schema.
            schema: part.starts_with("output_").then(|| text.clone()),
            ..PartFormat::default()
        };
        for topic in subject_topics {
            files.push((format!("{topic}-{side}"), kind, text.clone()));
        }
    }
    formats.check(false).map_err(anyhow::Error::msg)?;
    let files: Arc<dyn Schemas> = Arc::new(weir_schema::files::SchemaFiles::new(&files)?);
    // Each input topic's writer: its lines' JSON in the input format.
    for topic in &topics {
        let writer = Formats {
            output_key: PartFormat {
                schema: None,
                ..formats.key.clone()
            },
            output_value: PartFormat {
                schema: None,
                ..formats.value.clone()
            },
            ..Formats::default()
        };
        let Some(writer) = OutputCodec::new(&writer, topic, Some(&files))? else {
            continue;
        };
        for l in lines
            .iter_mut()
            .filter(|l| l.is_record && l.topic.as_deref().unwrap_or(input_topic) == topic)
        {
            for (part, bytes) in [(Part::Key, &mut l.key), (Part::Value, &mut l.value)] {
                let Some(json) = bytes.as_ref().filter(|_| writer.encodes(part)) else {
                    continue;
                };
                let mut encoded = Vec::new();
                writer.encode(part, json, &mut encoded).map_err(|e| {
                    anyhow::anyhow!(
                        "line {}: its {} does not fit its --schema: {e}",
                        l.line,
                        part.as_str()
                    )
                })?;
                *bytes = Some(encoded);
            }
        }
    }
    Ok(Codecs {
        input: InputCodec::new(&formats, Some(&files))?
            .map(|c| Arc::new(c) as Arc<dyn RecordDecoding>),
        output: OutputCodec::new(&formats, output_topic, Some(&files))?
            .map(|c| Arc::new(c) as Arc<dyn RecordEncoding>),
    })
}
