//! The environment spec: reading renv.lock, the session case, validation, and tag stability.

mod support;

use proptest::prelude::*;
use starburst_cloud::{Arch, Error};
use starburst_provision::image::{EnvironmentSpec, PackageSource, binary_repository};

fn from_lock(json: &str) -> Result<EnvironmentSpec, Error> {
    EnvironmentSpec::from_renv_lock(json, Arch::X86_64, &support::base())
}

/// The message of an `InvalidInput` error, or a panic for any other outcome.
fn invalid(result: Result<EnvironmentSpec, Error>) -> String {
    match result {
        Err(Error::InvalidInput { message, .. }) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn renv_lock_pins_repository_and_github_packages() {
    let spec = from_lock(&support::renv_lock()).unwrap();
    assert_eq!(spec.r_version, "4.4.1");
    assert_eq!(spec.repositories.len(), 2);
    assert_eq!(
        spec.repositories["universe"],
        "https://futureverse.r-universe.dev"
    );
    assert_eq!(spec.packages["future"].version, "1.34.0");
    assert_eq!(
        spec.packages["parallelly"].source,
        PackageSource::Repository {
            name: "universe".into()
        }
    );
    assert_eq!(
        spec.packages["progressr"].source,
        PackageSource::GitHub {
            user: "futureverse".into(),
            repo: "progressr".into(),
            sha: "5d4a0e1b6f1c9a3e7b2d8c4f0a6e9b1d3c5f7a9e".into(),
        }
    );
    assert!(
        !spec.packages.contains_key("starburst"),
        "starburst comes with the runtime, not the lockfile"
    );
    assert_eq!(spec.packages.len(), 8);
}

#[test]
fn renv_lock_package_without_repository_uses_the_first_listed() {
    let lock = r#"{"R": {"Version": "4.4.1", "Repositories": [
        {"Name": "PPM", "URL": "https://packagemanager.posit.co/cran/latest"},
        {"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
      "Packages": {"cli": {"Package": "cli", "Version": "3.6.3", "Source": "Repository"}}}"#;
    let spec = from_lock(lock).unwrap();
    assert_eq!(
        spec.packages["cli"].source,
        PackageSource::Repository { name: "PPM".into() }
    );
}

#[test]
fn malformed_renv_locks_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("not json", "not valid JSON"),
        (r#"{"Packages": {}}"#, "field R is missing"),
        (
            r#"{"R": {"Repositories": []}, "Packages": {}}"#,
            "field R.Version is missing",
        ),
        (
            r#"{"R": {"Version": 4.4, "Repositories": []}, "Packages": {}}"#,
            "field R.Version must be a string",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": {}}, "Packages": {}}"#,
            "field R.Repositories must be an array",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN"}]}, "Packages": {}}"#,
            "field R.Repositories[0].URL is missing",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]}}"#,
            "field Packages is missing",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli", "Source": "Repository"}}}"#,
            "field Packages.cli.Version is missing",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "glue", "Version": "1.0.0", "Source": "Repository"}}}"#,
            "field Packages.cli.Package is \"glue\"",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"pkg": {"Package": "pkg", "Version": "1.0.0", "Source": "GitHub", "RemoteUsername": "me"}}}"#,
            "field Packages.pkg.RemoteRepo is missing",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"Biobase": {"Package": "Biobase", "Version": "2.64.0", "Source": "Bioconductor"}}}"#,
            "A package cannot be installed on workers: Biobase 2.64.0 (Bioconductor)",
        ),
        (
            r#"{"R": {"Version": "4.4", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]}, "Packages": {}}"#,
            "R version \"4.4\" must be major.minor.patch",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli", "Version": "latest", "Source": "Repository"}}}"#,
            "version of package cli \"latest\" is not an R version",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"pkg": {"Package": "pkg", "Version": "1.0.0", "Source": "GitHub",
                 "RemoteUsername": "me", "RemoteRepo": "pkg", "RemoteSha": "main"}}}"#,
            "needs a full 40-hex commit SHA",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "ftp://example.org"}]}, "Packages": {}}"#,
            "must be an http(s) URL",
        ),
        (
            r#"{"R": {"Version": "4.4.1", "Repositories": []}, "Packages": {}}"#,
            "no package repository",
        ),
    ];
    for (json, expected) in cases {
        let message = invalid(from_lock(json));
        assert!(
            message.contains(expected),
            "renv.lock {json}\n  expected a message containing {expected:?}\n  got {message:?}"
        );
    }
}

#[test]
fn session_packages_skip_base_recommended_and_starburst() {
    let spec = support::session_spec(Arch::X86_64);
    let names: Vec<&str> = spec.packages.keys().map(String::as_str).collect();
    assert_eq!(names, ["data.table", "future", "globals", "jsonlite"]);
    assert!(spec.packages.values().all(|p| p.source
        == PackageSource::Repository {
            name: "CRAN".into()
        }));
}

#[test]
fn session_package_given_twice_with_two_versions_is_an_error() {
    let message = invalid(EnvironmentSpec::from_packages(
        "4.4.1",
        Arch::X86_64,
        [("future", "1.34.0"), ("future", "1.33.0")],
        support::cran(),
        &support::base(),
    ));
    assert!(
        message.contains("package future is given twice"),
        "{message}"
    );
}

#[test]
fn session_without_repositories_is_an_error() {
    let message = invalid(EnvironmentSpec::from_packages(
        "4.4.1",
        Arch::X86_64,
        [("future", "1.34.0")],
        Vec::new(),
        &support::base(),
    ));
    assert!(message.contains("no package repository"), "{message}");
}

#[test]
fn every_refused_package_is_named_in_one_error() {
    let lock = r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
      "Packages": {
        "Biobase": {"Package": "Biobase", "Version": "2.64.0", "Source": "Bioconductor"},
        "mine": {"Package": "mine", "Version": "0.0.1", "Source": "Local"},
        "devel": {"Package": "devel", "Version": "1.2.3.9000", "Source": "Repository"},
        "cli": {"Package": "cli", "Version": "3.6.3", "Source": "Repository"},
        "odd": {"Package": "odd", "Version": "1.0.0", "Source": "unknown"}}}"#;
    let message = invalid(from_lock(lock));
    for part in [
        "Packages cannot be installed on workers",
        "Biobase 2.64.0 (Bioconductor)",
        "mine 0.0.1 (Local)",
        "odd 1.0.0 (unknown)",
        "devel 1.2.3.9000 (a development version",
        "GitHub",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    assert!(!message.contains("cli"), "{message}");
    // On an r-universe, a development version is what is published: kept.
    let universe = r#"{"R": {"Version": "4.4.1", "Repositories": [{"Name": "U", "URL": "https://futureverse.r-universe.dev"}]},
      "Packages": {"future": {"Package": "future", "Version": "1.40.0.9001", "Source": "Repository"}}}"#;
    assert_eq!(
        from_lock(universe).unwrap().packages["future"].version,
        "1.40.0.9001"
    );
}

#[test]
fn tag_is_a_valid_ecr_tag_with_version_and_platform() {
    for arch in [Arch::X86_64, Arch::Arm64] {
        let tag = support::session_spec(arch).tag();
        let platform = if arch == Arch::X86_64 {
            "amd64"
        } else {
            "arm64"
        };
        assert!(tag.starts_with(&format!("env-r4.4.1-{platform}-")), "{tag}");
        assert!(tag.len() <= 128);
        assert!(
            tag.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        );
    }
}

#[test]
fn repositories_become_binary_repositories_of_the_distribution() {
    let managers = support::managers();
    let cases = [
        (
            "https://packagemanager.posit.co/cran/2024-09-01",
            "https://packagemanager.posit.co/cran/__linux__/noble/2024-09-01",
            Some("https://packagemanager.posit.co/__api__/repos/cran/sysreqs"),
        ),
        (
            "https://packagemanager.posit.co/cran/latest/",
            "https://packagemanager.posit.co/cran/__linux__/noble/latest",
            Some("https://packagemanager.posit.co/__api__/repos/cran/sysreqs"),
        ),
        (
            "https://p3m.dev/cran/__linux__/jammy/2024-01-02",
            "https://p3m.dev/cran/__linux__/noble/2024-01-02",
            Some("https://p3m.dev/__api__/repos/cran/sysreqs"),
        ),
        (
            "https://cloud.r-project.org",
            "https://packagemanager.posit.co/cran/__linux__/noble/2024-05-06",
            Some("https://packagemanager.posit.co/__api__/repos/cran/sysreqs"),
        ),
        (
            "https://futureverse.r-universe.dev",
            "https://futureverse.r-universe.dev",
            None,
        ),
    ];
    for (url, binary, api) in cases {
        let (got, got_api) = binary_repository(url, "noble", "2024-05-06", &managers);
        assert_eq!(got, binary, "{url}");
        assert_eq!(got_api.as_deref(), api, "{url}");
    }
}

#[test]
fn tag_changes_with_r_version_platform_repository_source_runtime_and_snapshot() {
    let base = support::session_spec(Arch::X86_64);
    let mut variants = vec![support::session_spec(Arch::Arm64)];
    let mut r = base.clone();
    r.r_version = "4.4.2".into();
    variants.push(r);
    let mut repo = base.clone();
    repo.repositories.insert(
        "CRAN".into(),
        "https://packagemanager.posit.co/cran/2024-10-01".into(),
    );
    variants.push(repo);
    let mut github = base.clone();
    github.packages.get_mut("future").unwrap().source = PackageSource::GitHub {
        user: "futureverse".into(),
        repo: "future".into(),
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
    };
    variants.push(github);
    let mut runtime = base.clone();
    runtime.runtime = "runtime-0.1.1-r4.4.1-amd64-fedcba9876543210".into();
    variants.push(runtime);
    let mut snapshot = base.clone();
    snapshot.snapshot = "2024-10-01".into();
    variants.push(snapshot);
    let mut tags: Vec<String> = variants.iter().map(EnvironmentSpec::tag).collect();
    tags.push(base.tag());
    let n = tags.len();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), n, "every variant has its own tag: {tags:?}");
}

#[test]
fn spec_round_trips_through_json() {
    let spec = from_lock(&support::renv_lock()).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    let back: EnvironmentSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.tag(), spec.tag());
}

fn package_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9.]{0,8}[a-zA-Z0-9]".prop_filter("not shipped with R", |n| {
        !starburst_provision::image::is_shipped_with_r(n) && n != "starburst"
    })
}

fn version() -> impl Strategy<Value = String> {
    (0u32..20, 0u32..50, 0u32..20).prop_map(|(a, b, c)| format!("{a}.{b}.{c}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Same packages in any order → the same tag; any one version changed → another tag.
    #[test]
    fn tag_depends_on_content_not_order(
        packages in proptest::collection::btree_map(package_name(), version(), 1..20),
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let base = support::base();
        let list: Vec<(String, String)> = packages.clone().into_iter().collect();
        let mut shuffled = list.clone();
        // A deterministic shuffle from the seed (Fisher–Yates with an LCG).
        let mut state = seed;
        for i in (1..shuffled.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (state >> 33) as usize % (i + 1));
        }
        let spec = |pkgs: Vec<(String, String)>| {
            EnvironmentSpec::from_packages("4.4.1", Arch::X86_64, pkgs, support::cran(), &base)
                .unwrap()
        };
        let tag = spec(list.clone()).tag();
        prop_assert_eq!(&tag, &spec(shuffled).tag());

        let mut changed = list;
        let i = pick.index(changed.len());
        changed[i].1.push_str(".1");
        prop_assert_ne!(&tag, &spec(changed).tag());
    }
}
