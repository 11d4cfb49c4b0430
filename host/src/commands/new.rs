//! `weir new`: a plugin directory from a template.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The plugin directory to create; its last component names the plugin.
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = weir::scaffold::Lang::Rust)]
    pub lang: weir::scaffold::Lang,
    /// The SDK directory (default: $WEIR_SDK, else the guest-sdk this weir was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

pub fn new_plugin(args: NewArgs) -> Result<ExitCode> {
    let sdk = args.sdk.unwrap_or_else(weir::scaffold::default_sdk_dir);
    let files = weir::scaffold::create(&args.dir, args.lang, &sdk)?;
    for f in &files {
        eprintln!("created {}", f.display());
    }
    let name = args.dir.file_name().unwrap_or_default().to_string_lossy();
    eprintln!(
        "next: cd {} && ./build && weir test {name}.wasm -i sample.jsonl",
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
