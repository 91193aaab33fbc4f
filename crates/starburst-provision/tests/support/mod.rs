//! Shared fixtures of the image tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use starburst_cloud::Arch;
use starburst_provision::image::{
    BinaryPackage, Distribution, EnvironmentBase, EnvironmentSpec, PACKAGE_MANAGERS, RuntimeSpec,
};

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture renv.lock with CRAN, r-universe and GitHub packages (and starburst, local).
pub fn renv_lock() -> String {
    std::fs::read_to_string(fixtures().join("renv-cran-github.lock")).unwrap()
}

/// A stand-in binary package of starburst in `dir`, always the same bytes (so tags are stable).
pub fn package(dir: &Path) -> BinaryPackage {
    let path = dir.join("starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz");
    std::fs::write(&path, b"starburst 0.1.0 binary package (test fixture)\n").unwrap();
    BinaryPackage::from_file(path).unwrap()
}

/// The production runtime of R 4.4.1 for `arch` with the stand-in package.
pub fn runtime(dir: &Path, arch: Arch) -> RuntimeSpec {
    RuntimeSpec::rocker("4.4.1", arch, "0.1.0", package(dir))
}

/// An environment base on a runtime tag, Ubuntu 24.04, at a dated snapshot.
pub fn base() -> EnvironmentBase {
    EnvironmentBase {
        runtime: "runtime-0.1.0-r4.4.1-amd64-0123456789abcdef".into(),
        distribution: Distribution::rocker("4.4.1"),
        snapshot: "2024-09-01".into(),
    }
}

/// The production package managers.
pub fn managers() -> Vec<String> {
    PACKAGE_MANAGERS.iter().map(|m| (*m).to_owned()).collect()
}

/// CRAN through a dated Posit Package Manager snapshot.
pub fn cran() -> Vec<(String, String)> {
    vec![(
        "CRAN".to_owned(),
        "https://packagemanager.posit.co/cran/2024-09-01".to_owned(),
    )]
}

/// A session's attached and loaded packages, base and recommended ones included.
pub fn session_packages() -> Vec<(&'static str, &'static str)> {
    vec![
        ("stats", "4.4.1"),
        ("future", "1.34.0"),
        ("data.table", "1.15.4"),
        ("Matrix", "1.7-0"),
        ("starburst", "0.1.0"),
        ("globals", "0.16.3"),
        ("utils", "4.4.1"),
        ("jsonlite", "1.8.8"),
    ]
}

/// The session spec of `session_packages()` on `arch`.
pub fn session_spec(arch: Arch) -> EnvironmentSpec {
    EnvironmentSpec::from_packages("4.4.1", arch, session_packages(), cran(), &base()).unwrap()
}
