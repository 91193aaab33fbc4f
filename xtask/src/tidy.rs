//! Tidy tests: the architecture's invariants, checked as ordinary tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn manifest(path: &Path) -> toml_edit::DocumentMut {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn deps(m: &toml_edit::DocumentMut) -> BTreeSet<String> {
    m.get("dependencies")
        .and_then(|d| d.as_table_like())
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

fn crates() -> BTreeMap<String, BTreeSet<String>> {
    let root = crate::project_root();
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let m = manifest(&dir.join("Cargo.toml"));
        let name = m["package"]["name"].as_str().unwrap().to_string();
        assert_eq!(
            dir.file_name().unwrap().to_str().unwrap(),
            name,
            "folder name must equal crate name"
        );
        out.insert(name, deps(&m));
    }
    out
}

/// Layer of each workspace crate; a crate may depend only on crates of lower layers (and the
/// facade on everything).
fn layer(name: &str) -> u8 {
    match name {
        "starburst-cloud" | "starburst-serialization" => 0,
        "starburst-quota" | "starburst-cost" | "starburst-provision" => 1,
        "starburst-scheduler" | "starburst-worker" => 2,
        "starburst-aws" | "starburst-local" => 3,
        "starburst" => 4,
        other => panic!("crate {other} has no layer: add it to tidy.rs and ARCHITECTURE.md"),
    }
}

#[test]
fn dependencies_point_down_the_layers() {
    let all = crates();
    for (name, deps) in &all {
        for d in deps.iter().filter(|d| all.contains_key(*d)) {
            let (from, to) = (layer(name), layer(d));
            let ok = match from {
                0 => false,
                1 => to == 0,
                2 => to <= 1,
                // Adapters implement the L0 ports and know nothing of the layers above.
                3 => to == 0,
                _ => true,
            };
            assert!(
                ok,
                "{name} (layer {from}) must not depend on {d} (layer {to})"
            );
        }
    }
}

#[test]
fn only_the_aws_adapter_names_the_aws_sdk() {
    for (name, deps) in crates() {
        if name != "starburst-aws" {
            let aws: Vec<_> = deps.iter().filter(|d| d.starts_with("aws-")).collect();
            assert!(
                aws.is_empty(),
                "{name} depends on {aws:?}; only starburst-aws may"
            );
        }
    }
}

#[test]
fn the_r_binding_depends_on_the_facade_only() {
    let m = manifest(&crate::project_root().join("rpkg/src/rust/Cargo.toml"));
    let ours: Vec<_> = deps(&m)
        .into_iter()
        .filter(|d| d.starts_with("starburst"))
        .collect();
    assert_eq!(ours, vec!["starburst".to_string()]);
}

#[test]
fn every_crate_says_what_it_owns() {
    let root = crate::project_root();
    for name in crates().keys() {
        let lib = root.join("crates").join(name).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must start with a //! paragraph",
            lib.display()
        );
        assert!(
            text.contains("#![deny(missing_docs)]"),
            "{} must deny missing docs",
            lib.display()
        );
    }
}

#[test]
fn the_r_wrappers_match_the_binding() {
    // rextendr is not on Debian, so R/extendr-wrappers.R is kept by hand: check it calls every
    // function the binding exports, and nothing else.
    let root = crate::project_root();
    let rust = std::fs::read_to_string(root.join("rpkg/src/rust/src/lib.rs")).unwrap();
    let module = &rust[rust
        .find("extendr_module!")
        .expect("the binding has a module")..];
    let exported: BTreeSet<String> = module
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("fn ")
                .map(|f| f.trim_end_matches(';').to_string())
        })
        .collect();
    let r = std::fs::read_to_string(root.join("rpkg/R/extendr-wrappers.R")).unwrap();
    let called: BTreeSet<String> = r
        .match_indices("wrap__")
        .map(|(i, _)| {
            r[i + 6..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    assert!(!exported.is_empty());
    assert_eq!(
        exported, called,
        "rpkg/R/extendr-wrappers.R and rpkg/src/rust/src/lib.rs disagree"
    );
}
