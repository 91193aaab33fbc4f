//! Golden tests of rendered build contexts: the environment Dockerfile and manifest of several
//! specs and the runtime Dockerfile, compared byte for byte with `tests/golden/<case>/`. Regenerate them with
//! `STARBURST_BLESS=1 cargo test -p starburst-provision --test golden` and review the diff.

mod support;

use std::path::{Path, PathBuf};

use starburst_cloud::Arch;
use starburst_provision::image::{
    ENVIRONMENT_TEMPLATE, EnvironmentSpec, RUNTIME_TEMPLATE, manifest, render_dockerfile,
    write_context,
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

const RUNTIME_IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst:runtime-0.1.0-r4.4.1-amd64-0123456789abcdef";

fn check_spec(case: &str, spec: &EnvironmentSpec) {
    check(
        case,
        "Dockerfile",
        &render_dockerfile(spec, RUNTIME_IMAGE).unwrap(),
    );
    let manifest = manifest(spec, &support::managers()).unwrap();
    check(
        case,
        "manifest.json",
        &format!("{}\n", serde_json::to_string_pretty(&manifest).unwrap()),
    );
    check(case, "tag", &format!("{}\n", spec.tag()));
}

#[test]
fn renv_lock_with_cran_universe_and_github_packages() {
    let spec =
        EnvironmentSpec::from_renv_lock(&support::renv_lock(), Arch::X86_64, &support::base())
            .unwrap();
    check_spec("renv-amd64", &spec);
}

#[test]
fn session_packages_amd64() {
    check_spec("session-amd64", &support::session_spec(Arch::X86_64));
}

#[test]
fn session_packages_arm64() {
    check_spec("session-arm64", &support::session_spec(Arch::Arm64));
}

#[test]
fn session_without_packages_r_4_3() {
    let spec = EnvironmentSpec::from_packages(
        "4.3.3",
        Arch::Arm64,
        Vec::<(String, String)>::new(),
        support::cran(),
        &support::base(),
    )
    .unwrap();
    check_spec("empty-r4.3.3-arm64", &spec);
}

#[test]
fn runtime_dockerfile_amd64() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = support::runtime(dir.path(), Arch::X86_64);
    check(
        "runtime-amd64",
        "Dockerfile",
        &runtime.dockerfile().unwrap(),
    );
    check("runtime-amd64", "tag", &format!("{}\n", runtime.tag()));
}

#[test]
fn write_context_holds_dockerfile_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::X86_64);
    write_context(&spec, RUNTIME_IMAGE, &support::managers(), dir.path()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Dockerfile", "manifest.json"]);
    let dockerfile = std::fs::read_to_string(dir.path().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("FROM {RUNTIME_IMAGE}\n")),
        "{dockerfile}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(written, manifest(&spec, &support::managers()).unwrap());
}

#[test]
fn runtime_context_holds_the_package_and_refuses_one_changed_since_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = support::runtime(dir.path(), Arch::X86_64);
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    runtime.write_context(&context).unwrap();
    assert_eq!(
        std::fs::read(context.join("starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz")).unwrap(),
        std::fs::read(&runtime.package.path).unwrap()
    );
    std::fs::write(&runtime.package.path, b"another build").unwrap();
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let err = runtime.write_context(&again).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed since the runtime spec was made"),
        "{err}"
    );
}

/// The crate embeds its own copies of the templates (the R tarball holds the crate without the
/// repository's `templates/`); they must equal the repository's.
#[test]
fn embedded_templates_equal_the_repository_templates() {
    for (name, embedded) in [
        ("environment.Dockerfile", ENVIRONMENT_TEMPLATE),
        ("runtime.Dockerfile", RUNTIME_TEMPLATE),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../templates")
            .join(name);
        let repo = std::fs::read_to_string(&path).unwrap();
        assert!(
            repo == embedded,
            "{} and crates/starburst-provision/templates/{name} differ: copy one over the other",
            path.display()
        );
    }
}
