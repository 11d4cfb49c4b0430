//! `weir state get|scan`: a deployment's state as the admin API reads it
//! from every host that owns a partition of it.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use weir_pipeline::state_query::{Entry, StateQuery};

use super::api::ApiArgs;

#[derive(Subcommand)]
pub enum StateCommand {
    /// The value of one key (on every partition that has it).
    Get {
        /// The deployment's name.
        name: String,
        key: String,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Keys in order, by prefix or range, a page at a time.
    Scan {
        /// The deployment's name.
        name: String,
        /// Keys starting with this.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Last key (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Continue after this key (what the previous page ended with).
        #[arg(long)]
        after: Option<String>,
        /// Entries at most (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(clap::Args)]
pub struct KeyArgs {
    /// Keys of an SDK map (`state::Map::new(MAP)`), shown without its prefix.
    #[arg(long)]
    map: Option<String>,
    /// Only this input partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Keys are given in hex.
    #[arg(long)]
    hex: bool,
}

/// Prints entries as `partition<TAB>key<TAB>value`, the value as JSON
/// where it is JSON; hosts that could not answer go to stderr.
pub fn run(command: StateCommand) -> Result<ExitCode> {
    let (name, api, query) = match command {
        StateCommand::Get {
            name,
            key,
            keys,
            api,
        } => (
            name,
            api,
            StateQuery {
                key: Some(key),
                map: keys.map,
                partition: keys.partition,
                hex: keys.hex,
                ..Default::default()
            },
        ),
        StateCommand::Scan {
            name,
            prefix,
            from,
            to,
            after,
            limit,
            keys,
            api,
        } => (
            name,
            api,
            StateQuery {
                map: keys.map,
                prefix,
                from,
                to,
                after,
                limit: Some(limit),
                partition: keys.partition,
                hex: keys.hex,
                ..Default::default()
            },
        ),
    };
    let answer = api.client()?.state(&name, &query)?;
    for e in &answer.entries {
        println!(
            "{}\t{}\t{}",
            e.partition,
            e.key_hex.as_deref().unwrap_or(&e.key),
            shown(e)
        );
    }
    let mut complete = true;
    for h in answer.hosts.iter().filter(|h| h.error.is_some()) {
        eprintln!(
            "warning: host {} did not answer: {}",
            h.host,
            h.error.as_deref().unwrap_or_default()
        );
        complete = false;
    }
    if let Some(after) = &answer.next_after {
        eprintln!("more: --after {after}");
    } else if let Some(after) = &answer.next_after_hex {
        eprintln!("more: --hex --after {after} (with the other keys in hex too)");
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn shown(e: &Entry) -> String {
    match (&e.value, &e.value_text, &e.value_hex) {
        (Some(v), _, _) => v.to_string(),
        (_, Some(t), _) => t.clone(),
        (_, _, Some(h)) => format!("hex:{h}"),
        _ => String::new(),
    }
}
