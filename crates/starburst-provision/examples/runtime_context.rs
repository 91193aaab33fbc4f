//! Writes a runtime's build context (Dockerfile and starburst's binary package) into a
//! directory: what the release workflow (`.github/workflows/runtime.yml`) builds and publishes,
//! rendered by the same code users' accounts build with.
//!
//! `cargo run -p starburst-provision --example runtime_context -- --r-version 4.4.1 --arch amd64
//! --starburst-version 0.1.0 --package starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz <dir>`

use std::collections::BTreeMap;
use std::process::ExitCode;

use starburst_cloud::Arch;
use starburst_provision::image::{BinaryPackage, RuntimeSpec};

fn main() -> ExitCode {
    let mut flags = BTreeMap::new();
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--") {
            Some(name) => {
                flags.insert(name.to_owned(), args.next().unwrap_or_default());
            }
            None => dir = Some(arg),
        }
    }
    let get = |name: &str| flags.get(name).cloned().unwrap_or_default();
    let arch = match get("arch").as_str() {
        "amd64" | "x86_64" => Arch::X86_64,
        "arm64" | "aarch64" => Arch::Arm64,
        other => {
            eprintln!("--arch must be amd64 or arm64, not {other:?}");
            return ExitCode::FAILURE;
        }
    };
    let Some(dir) = dir else {
        eprintln!(
            "usage: runtime_context --r-version V --arch amd64|arm64 --starburst-version V --package FILE <dir>"
        );
        return ExitCode::FAILURE;
    };
    let result = BinaryPackage::from_file(get("package")).and_then(|package| {
        let spec = RuntimeSpec::rocker(&get("r-version"), arch, &get("starburst-version"), package);
        std::fs::create_dir_all(&dir)
            .map_err(|e| starburst_cloud::Error::other("create context", dir.clone(), e))?;
        spec.write_context(std::path::Path::new(&dir))?;
        Ok(spec.tag())
    });
    match result {
        Ok(tag) => {
            println!("{tag}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
