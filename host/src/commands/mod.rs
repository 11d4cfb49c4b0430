//! One module per subcommand of `weir`: its arguments and what it does.

pub mod api;
pub mod bench;
pub mod dev;
pub mod new;
pub mod run;
pub mod state;
pub mod test;

/// A `KEY=VALUE` argument (`--config`, `--limit`).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}
