//! `cargo xtask dist`: an R source tarball that builds offline (being written).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub fn dist(_root: &Path) -> Result<PathBuf> {
    bail!("cargo xtask dist is not implemented yet")
}
