//! Shared fixtures of the image tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use starburst_cloud::Arch;
use starburst_provision::image::{EnvironmentSpec, StarburstSource};

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture renv.lock with CRAN, r-universe and GitHub packages (and starburst, local).
pub fn renv_lock() -> String {
    std::fs::read_to_string(fixtures().join("renv-cran-github.lock")).unwrap()
}

/// A stand-in starburst source tarball in `dir`, always the same bytes (so tags are stable).
pub fn starburst(dir: &Path) -> StarburstSource {
    let path = dir.join("starburst_0.1.0.tar.gz");
    std::fs::write(&path, b"starburst 0.1.0 source tarball (test fixture)\n").unwrap();
    StarburstSource::from_tarball("0.1.0", path).unwrap()
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
pub fn session_spec(dir: &Path, arch: Arch) -> EnvironmentSpec {
    EnvironmentSpec::from_packages("4.4.1", arch, session_packages(), cran(), starburst(dir))
        .unwrap()
}
