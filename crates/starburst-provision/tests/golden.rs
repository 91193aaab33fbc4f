//! Golden tests of rendered build contexts: the Dockerfile and the pinned renv.lock of several
//! specs, compared byte for byte with `tests/golden/<case>/`. Regenerate them with
//! `STARBURST_BLESS=1 cargo test -p starburst-provision --test golden` and review the diff.

mod support;

use std::path::{Path, PathBuf};

use starburst_cloud::Arch;
use starburst_provision::image::{
    DOCKERFILE_TEMPLATE, EnvironmentSpec, render_dockerfile, render_lockfile, write_context,
};

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn check(case: &str, file: &str, actual: &str) {
    let path = golden_dir(case).join(file);
    if std::env::var_os("STARBURST_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run STARBURST_BLESS=1 cargo test -p starburst-provision --test golden",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the rendering; if the change is intended, run \
         STARBURST_BLESS=1 cargo test -p starburst-provision --test golden\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn check_spec(case: &str, spec: &EnvironmentSpec) {
    check(case, "Dockerfile", &render_dockerfile(spec).unwrap());
    check(case, "renv.lock", &render_lockfile(spec).unwrap());
    check(case, "tag", &format!("{}\n", spec.tag()));
}

#[test]
fn renv_lock_with_cran_universe_and_github_packages() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvironmentSpec::from_renv_lock(
        &support::renv_lock(),
        Arch::X86_64,
        support::starburst(dir.path()),
    )
    .unwrap();
    check_spec("renv-amd64", &spec);
}

#[test]
fn session_packages_amd64() {
    let dir = tempfile::tempdir().unwrap();
    check_spec(
        "session-amd64",
        &support::session_spec(dir.path(), Arch::X86_64),
    );
}

#[test]
fn session_packages_arm64() {
    let dir = tempfile::tempdir().unwrap();
    check_spec(
        "session-arm64",
        &support::session_spec(dir.path(), Arch::Arm64),
    );
}

#[test]
fn session_without_packages_r_4_3() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvironmentSpec::from_packages(
        "4.3.3",
        Arch::Arm64,
        Vec::<(String, String)>::new(),
        support::cran(),
        support::starburst(dir.path()),
    )
    .unwrap();
    check_spec("empty-r4.3.3-arm64", &spec);
}

/// The rendered lockfile is a lockfile this crate reads back into the same spec.
#[test]
fn rendered_lockfile_reads_back_into_the_same_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvironmentSpec::from_renv_lock(
        &support::renv_lock(),
        Arch::X86_64,
        support::starburst(dir.path()),
    )
    .unwrap();
    let again = EnvironmentSpec::from_renv_lock(
        &render_lockfile(&spec).unwrap(),
        Arch::X86_64,
        spec.starburst.clone(),
    )
    .unwrap();
    assert_eq!(again, spec);
    assert_eq!(again.tag(), spec.tag());
}

#[test]
fn write_context_holds_dockerfile_lockfile_and_tarball() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(dir.path(), Arch::X86_64);
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    write_context(&spec, &context).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&context)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Dockerfile", "renv.lock", "starburst_0.1.0.tar.gz"]);
    assert_eq!(
        std::fs::read_to_string(context.join("Dockerfile")).unwrap(),
        render_dockerfile(&spec).unwrap()
    );
    assert_eq!(
        std::fs::read(context.join("starburst_0.1.0.tar.gz")).unwrap(),
        std::fs::read(&spec.starburst.tarball).unwrap()
    );
}

#[test]
fn write_context_refuses_a_tarball_changed_since_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(dir.path(), Arch::X86_64);
    std::fs::write(&spec.starburst.tarball, b"another build").unwrap();
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    let err = write_context(&spec, &context).unwrap_err();
    assert!(
        matches!(err, starburst_cloud::Error::InvalidInput { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("changed since the spec was made"),
        "{err}"
    );
}

/// The crate embeds its own copy of the template (the R tarball holds the crate without the
/// repository's `templates/`); it must equal the repository's.
#[test]
fn embedded_template_equals_the_repository_template() {
    let repo_template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/Dockerfile.template");
    let repo = std::fs::read_to_string(&repo_template).unwrap();
    assert!(
        repo == DOCKERFILE_TEMPLATE,
        "{} and crates/starburst-provision/templates/Dockerfile.template differ: copy one over the other",
        repo_template.display()
    );
}
