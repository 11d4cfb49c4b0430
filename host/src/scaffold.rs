//! `weir new`: a plugin directory for a new transform, in any supported
//! language, that builds with one command (`./build`, writing `NAME.wasm`)
//! and passes `weir test NAME.wasm -i sample.jsonl` as created.
//!
//! Templates live beside each language's SDK (`guest-sdk/template` for Rust,
//! `guest-sdk/<lang>/template` for the others), so the SDK and its starting
//! point change together; `{{name}}` in a template file is replaced by the
//! plugin's name and `{{sdk}}` by the SDK directory.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        })
    }
}

/// The SDK directory of this checkout: `WEIR_SDK` if set, else the
/// `guest-sdk` directory `weir` was built from.
pub fn default_sdk_dir() -> PathBuf {
    std::env::var_os("WEIR_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"))
}

fn template_dir(sdk: &Path, lang: Lang) -> PathBuf {
    match lang {
        Lang::Rust => sdk.join("template"),
        other => sdk.join(other.to_string()).join("template"),
    }
}

/// The `build` script of a new plugin: one command that leaves `NAME.wasm`
/// in the plugin directory.
fn build_script(lang: Lang, name: &str, sdk: &Path) -> String {
    let body = match lang {
        // A standalone cargo project (its own target directory), built for
        // wasm32-unknown-unknown by its .cargo/config.toml.
        Lang::Rust => {
            format!(
                "cargo build --release --target-dir target\ncp target/wasm32-unknown-unknown/release/{}.wasm {name}.wasm\n",
                name.replace('-', "_")
            )
        }
        other => format!("exec \"{}/{other}/build\" . {name}.wasm\n", sdk.display()),
    };
    format!(
        "#!/bin/sh\n# Builds {name}.wasm from this directory.\nset -e\ncd \"$(dirname \"$0\")\"\n{body}"
    )
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "plugin name `{name}`: use lower-case letters, digits and dashes, starting with a letter"
        );
    }
    Ok(())
}

/// Creates `dir` (which must not exist) as a new `lang` plugin named after
/// the directory's last component. Returns the files written.
pub fn create(dir: &Path, lang: Lang, sdk: &Path) -> Result<Vec<PathBuf>> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no plugin name", dir.display()))?;
    check_name(name)?;
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("SDK directory {} (set WEIR_SDK or --sdk)", sdk.display()))?;
    let template = template_dir(&sdk, lang);
    if !template.is_dir() {
        bail!("no {lang} template at {}", template.display());
    }
    let mut written = Vec::new();
    copy_template(
        &template,
        dir,
        &|text| {
            text.replace("{{name}}", name)
                .replace("{{sdk}}", &sdk.to_string_lossy())
        },
        &mut written,
    )?;
    let build = dir.join("build");
    std::fs::write(&build, build_script(lang, name, &sdk))
        .with_context(|| format!("writing {}", build.display()))?;
    std::fs::set_permissions(&build, std::fs::Permissions::from_mode(0o755))?;
    written.push(build);
    Ok(written)
}

fn copy_template(
    from: &Path,
    to: &Path,
    fill: &dyn Fn(&str) -> String,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_template(&entry.path(), &target, fill, written)?;
        } else {
            let text = std::fs::read_to_string(entry.path())
                .with_context(|| format!("reading template {}", entry.path().display()))?;
            std::fs::write(&target, fill(&text))
                .with_context(|| format!("writing {}", target.display()))?;
            written.push(target);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain() {
        for good in ["a", "my-plugin", "count2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "My", "2x", "a_b", "a-", "a b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_language_has_a_template_that_names_the_plugin() {
        let sdk = default_sdk_dir();
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C] {
            let dir = tempfile::tempdir().unwrap();
            let plugin = dir.path().join("hello-weir");
            let files = create(&plugin, lang, &sdk).unwrap();
            assert!(
                plugin.join("sample.jsonl").is_file(),
                "{lang}: sample.jsonl"
            );
            let build = std::fs::read_to_string(plugin.join("build")).unwrap();
            assert!(build.contains("hello-weir.wasm"), "{lang}: {build}");
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                assert!(
                    !text.contains("{{"),
                    "{lang}: {} keeps a placeholder",
                    f.display()
                );
            }
            assert!(
                create(&plugin, lang, &sdk).is_err(),
                "{lang}: an existing directory is refused"
            );
        }
    }
}
