//! `cargo xtask dist`: the R source tarball `<target>/dist/starburst_<version>.tar.gz`, which
//! installs with no checkout and no network.
//!
//! `R CMD INSTALL` unpacks a tarball into a temporary folder, where neither the root workspace
//! nor the `crates/` the binding reaches by path exist. So dist copies `rpkg/` into a staging
//! folder (the checkout is never touched) and turns its `src/rust/` into a standalone cargo
//! workspace:
//!
//! - every manifest is de-workspaced: `x.workspace = true` becomes the concrete value of the
//!   root's `[workspace.package]`, `[workspace.dependencies]` or `[workspace.lints]`, and path
//!   dependencies point at the copies by relative path;
//! - the workspace crates the binding needs (transitively, normal and build dependencies only)
//!   are copied to `src/rust/crates/<name>` without tests, benches, examples or
//!   dev-dependencies, which a build never needs and which would only add vendored crates;
//! - `src/rust/Cargo.toml` gets a `[workspace]` root with the `rpkg` profile (and the profiles
//!   it inherits) of the root manifest, and the root `Cargo.lock` seeds its lock file, so the
//!   tarball builds the versions the checkout tests;
//! - `cargo vendor` puts every third-party crate in `src/rust/vendor` (untouched: cargo checks
//!   its checksums), `src/rust/.cargo/config.toml` replaces crates.io with it, and the staged
//!   `src/Makevars` sets `CARGO_OFFLINE` so cargo builds `--offline --locked` with that config.
//!
//! The vignettes are built before `R CMD build`, which is told not to: building them itself
//! would make it install the staged package into a temporary library, compiling the whole
//! engine from the vendored crates (a quarter of an hour on two cores). dist builds them with
//! the package installed in the project library instead (`install()`, warm), and lays the
//! outputs out as `R CMD build` does (sources, outputs and tangled code in `inst/doc`, the
//! index in `build/vignette.rds`, nothing built left in `vignettes/`), so `R CMD check` finds
//! the vignettes of the tarball complete.
//!
//! `R CMD build` then makes the tarball; dist puts back the files of the staged Rust tree that
//! `R CMD build` drops or rewrites by name (vendored crates' `.gitmodules`, ...), since cargo
//! checks them against the vendored checksums, and checks the tarball holds the tree byte for
//! byte. With `XTASK_DIST_PROVE=1` dist also installs the tarball into a fresh library with an
//! empty `CARGO_HOME` and cargo's network off, and loads it (a full release build: minutes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

/// The R package, relative to the workspace root.
const RPKG: &str = "rpkg";
/// The binding crate, relative to the R package.
const BINDING: &str = "src/rust";
/// Where the staged workspace keeps its copies of the workspace crates, relative to `BINDING`.
const STAGED_CRATES: &str = "crates";
/// The cargo profile `src/Makevars` builds with.
const PROFILE: &str = "rpkg";
/// Dependency tables a build needs (dev-dependencies are dropped).
const BUILD_DEPENDENCY_TABLES: &[&str] = &["dependencies", "build-dependencies"];
/// Folders of the R package (relative to it) that dist never copies: build output that a
/// build without `CARGO_TARGET_DIR` leaves, and what dist itself writes.
const PACKAGE_SKIPS: &[&str] = &["src/rust/target", "src/rust/vendor"];
/// What a crate copy leaves out (besides what `.gitignore` names): build output, and the
/// targets a build never compiles.
const CRATE_SKIPS: &[&str] = &["target", "tests", "benches", "examples", ".git"];

/// Builds the vignettes of the package in the working directory as `R CMD build` does when
/// it builds them itself (`prepare_pkg` in `tools:::.build_packages`, R 4.2, whose steps and
/// R functions it reuses), but with the package taken from `R_LIBS` instead of a temporary
/// installation; then lists the vignettes (source, output, tangled code or nothing, as named
/// in `inst/doc`) one a line, tab-separated, in the file named by its argument.
const BUILD_VIGNETTES_R: &str = r#"# Written by `cargo xtask dist`.
listing <- commandArgs(trailingOnly = TRUE)[1L]
writeLines(character(), listing)
invisible(tools:::loadVignetteBuilder(".", TRUE))
vigns <- tools::pkgVignettes(dir = ".", check = TRUE)
if (is.null(vigns) || !length(vigns$docs)) quit(save = "no")
vignette_index_path <- file.path("build", "vignette.rds")
unlink(vignette_index_path)
# As R CMD build runs it: a fresh R, with this R first on the PATH.
Sys.setenv(PATH = paste(R.home("bin"), Sys.getenv("PATH"), sep = .Platform$path.sep))
status <- system2(file.path(R.home("bin"), "Rscript"),
                  c("--vanilla", "--default-packages=", "-e",
                    shQuote("tools::buildVignettes(dir = '.', tangle = TRUE)")))
if (status != 0L) stop("tools::buildVignettes() failed")
vigns <- tools::pkgVignettes(dir = ".", output = TRUE, source = TRUE)
stopifnot(!is.null(vigns))
doc_dir <- file.path("inst", "doc")
if (basename(vigns$dir) == "vignettes") {
    dir.create(doc_dir, recursive = TRUE, showWarnings = FALSE)
    tocopy <- unique(c(vigns$docs, vigns$outputs, unlist(vigns$sources)))
    copied <- file.copy(tocopy, doc_dir, copy.date = TRUE)
    if (!all(copied)) {
        warning("'inst/doc' files replaced by the built vignettes: ",
                paste(sQuote(basename(tocopy[!copied])), collapse = ", "), call. = FALSE)
        file.copy(tocopy[!copied], doc_dir, overwrite = TRUE, copy.date = TRUE)
    }
    unlink(c(vigns$outputs, unlist(vigns$sources)))
    extras_file <- file.path("vignettes", ".install_extras")
    if (file.exists(extras_file)) {
        extras <- readLines(extras_file, warn = FALSE)
        if (length(extras)) {
            allfiles <- dir("vignettes", all.files = TRUE, full.names = TRUE,
                            recursive = TRUE, include.dirs = TRUE)
            inst <- rep.int(FALSE, length(allfiles))
            for (e in extras) inst <- inst | grepl(e, allfiles, perl = TRUE, ignore.case = TRUE)
            file.copy(allfiles[inst], doc_dir, recursive = TRUE, copy.date = TRUE)
        }
    }
}
vignetteIndex <- tools:::.build_vignette_index(vigns)
for (i in seq_len(NROW(vignetteIndex))) {
    file <- file.path(doc_dir, vignetteIndex$R[i])
    if (!file_test("-f", file)) next
    bfr <- readLines(file, warn = FALSE)
    if (all(grepl("(^###|^[[:space:]]*$)", bfr, useBytes = TRUE))) {
        unlink(file)
        vignetteIndex$R[i] <- ""
    }
}
dir.create("build", showWarnings = FALSE)
saveRDS(vignetteIndex, file = vignette_index_path, version = 2L)
writeLines(paste(vignetteIndex$File, vignetteIndex$PDF, vignetteIndex$R, sep = "\t"), listing)
"#;

const CARGO_CONFIG: &str = "\
# Written by `cargo xtask dist`: build from the crates vendored in this package.
[source.crates-io]
replace-with = \"vendored-sources\"

[source.vendored-sources]
directory = \"vendor\"
";

pub fn dist(root: &Path) -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let out = target.join("dist");
    let stage = out.join("stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let rpkg = root.join(RPKG);
    let description = read(&rpkg.join("DESCRIPTION"))?;
    let package = description_field(&description, "Package")?;
    let version = description_field(&description, "Version")?;
    let pkg = stage.join(&package);

    let rpkg_dir = Path::new(RPKG);
    copy_files(
        root,
        &git_files(root, rpkg_dir)?,
        rpkg_dir,
        PACKAGE_SKIPS,
        &pkg,
    )?;
    // With the checkout's package installed (the R code the tarball holds), before vendoring.
    let vignettes = if builds_vignettes(&description) && pkg.join("vignettes").is_dir() {
        build_vignettes(&pkg, &crate::install()?, &out)?
    } else {
        Vec::new()
    };
    let rust = pkg.join(BINDING);
    stage_workspace(root, &rust)?;
    std::fs::copy(root.join("Cargo.lock"), rust.join("Cargo.lock"))
        .context("copying Cargo.lock")?;
    vendor(&rust)?;
    same_locked_versions(
        &read(&root.join("Cargo.lock"))?,
        &read(&rust.join("Cargo.lock"))?,
    )?;
    let makevars = pkg.join("src/Makevars");
    write(&makevars, &offline_makevars(&read(&makevars)?)?)?;

    let tarball = out.join(format!("{package}_{version}.tar.gz"));
    if tarball.exists() {
        std::fs::remove_file(&tarball)?;
    }
    crate::run(
        Command::new("R")
            .args([
                "CMD",
                "build",
                "--no-build-vignettes",
                "--no-manual",
                "--no-resave-data",
            ])
            .arg(&pkg)
            .current_dir(&out),
    )?;
    ensure!(
        tarball.is_file(),
        "R CMD build did not write {}",
        tarball.display()
    );
    complete_tarball(&tarball, &pkg, &package, &out.join("unpacked"))?;
    if !vignettes.is_empty() {
        check_shipped_vignettes(&tarball, &package, &vignettes)?;
    }
    std::fs::remove_dir_all(&stage)?;
    let size = std::fs::metadata(&tarball)?.len();
    eprintln!("{} ({:.1} MB)", tarball.display(), size as f64 / 1e6);

    if std::env::var_os("XTASK_DIST_PROVE").is_some_and(|v| v == "1") {
        prove_offline_install(&tarball, &package, &out.join("prove"))?;
    }
    Ok(tarball)
}

/// Files of `dir` (relative to `root`) that git tracks or would track, as they are in the work
/// tree: sources without the build output (`*.o`, `*.so`, ...) that `.gitignore` names.
fn git_files(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
        ])
        .arg(dir)
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    ensure!(
        output.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .filter(|p| root.join(p).is_file()) // tracked but deleted in the work tree
        .collect())
}

/// Copies `files` (relative to `root`, all under `prefix`) to `dest`, keeping their layout
/// under `prefix`, but for those whose path under `prefix` starts with one of `skips`.
fn copy_files(
    root: &Path,
    files: &[PathBuf],
    prefix: &Path,
    skips: &[&str],
    dest: &Path,
) -> Result<()> {
    for file in files {
        let rel = file.strip_prefix(prefix)?;
        if skips.iter().any(|skip| rel.starts_with(skip)) {
            continue;
        }
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
        std::fs::copy(root.join(file), &to)
            .with_context(|| format!("copying {}", file.display()))?;
    }
    Ok(())
}

/// Whether `R CMD build` would build the vignettes of a package with this DESCRIPTION (when it
/// has any): unless `BuildVignettes` says no, read as R's `tools:::str_parse_logic` does.
fn builds_vignettes(description: &str) -> bool {
    description_field(description, "BuildVignettes").map_or(true, |v| {
        !matches!(v.to_ascii_lowercase().as_str(), "0" | "no" | "false")
    })
}

/// A vignette as the tarball ships it: the names in `inst/doc` of its source, its output and
/// its tangled code (none when it has no code), as `build/vignette.rds` lists them.
#[derive(Debug, PartialEq)]
struct Vignette {
    source: String,
    output: String,
    code: Option<String>,
}

/// Builds the vignettes of the staged package `pkg` with the package installed in `lib`, and
/// lays them out as `R CMD build` does ([`BUILD_VIGNETTES_R`]). Its scratch files go in `out`.
fn build_vignettes(pkg: &Path, lib: &Path, out: &Path) -> Result<Vec<Vignette>> {
    let script = out.join("build-vignettes.R");
    let listing = out.join("vignettes.tsv");
    write(&script, BUILD_VIGNETTES_R)?;
    crate::run(
        Command::new("Rscript")
            .arg("--vanilla")
            .arg(&script)
            .arg(&listing)
            .current_dir(pkg)
            .env("R_LIBS", crate::r_libs(lib)),
    )?;
    let vignettes = parse_vignette_listing(&read(&listing)?)?;
    std::fs::remove_file(&script)?;
    std::fs::remove_file(&listing)?;
    eprintln!(
        "built {} vignettes with the package in {}",
        vignettes.len(),
        lib.display()
    );
    Ok(vignettes)
}

/// The vignettes [`BUILD_VIGNETTES_R`] lists: `source`, `output`, `code` (maybe empty) a line.
fn parse_vignette_listing(text: &str) -> Result<Vec<Vignette>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields[..] {
                [source, output, code] if !source.is_empty() && !output.is_empty() => {
                    Ok(Vignette {
                        source: source.to_owned(),
                        output: output.to_owned(),
                        code: (!code.is_empty()).then(|| code.to_owned()),
                    })
                }
                _ => bail!("unexpected vignette listing line {line:?}"),
            }
        })
        .collect()
}

/// Fails unless `tarball` ships `vignettes` built: `R CMD build --no-build-vignettes` only
/// checks that the outputs `build/vignette.rds` lists are in `inst/doc`.
fn check_shipped_vignettes(tarball: &Path, package: &str, vignettes: &[Vignette]) -> Result<()> {
    let output = Command::new("tar")
        .arg("-tzf")
        .arg(tarball)
        .output()
        .context("running tar -tzf")?;
    ensure!(
        output.status.success(),
        "tar -tzf {} failed: {}",
        tarball.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    let problems = vignette_layout_problems(package, vignettes, &listing.lines().collect());
    ensure!(
        problems.is_empty(),
        "the tarball does not ship the built vignettes as R CMD build would: {}",
        problems.join("; ")
    );
    eprintln!("the tarball ships {} built vignettes", vignettes.len());
    Ok(())
}

/// What a tarball whose files are `files` (as `tar -t` lists them) lacks or has in excess for
/// `vignettes` built the way `R CMD build` builds them: sources, outputs and tangled code in
/// `inst/doc`, the index in `build/vignette.rds`, and no output or code left in `vignettes/`.
fn vignette_layout_problems(
    package: &str,
    vignettes: &[Vignette],
    files: &BTreeSet<&str>,
) -> Vec<String> {
    let has = |path: &str| files.contains(format!("{package}/{path}").as_str());
    let mut problems = Vec::new();
    if !has("build/vignette.rds") {
        problems.push("no build/vignette.rds".to_owned());
    }
    for v in vignettes {
        let built = [Some(&v.output), v.code.as_ref()];
        for name in std::iter::once(&v.source).chain(built.into_iter().flatten()) {
            if !has(&format!("inst/doc/{name}")) {
                problems.push(format!("no inst/doc/{name}"));
            }
        }
        for name in built.into_iter().flatten() {
            if has(&format!("vignettes/{name}")) {
                problems.push(format!("vignettes/{name} left behind"));
            }
        }
    }
    problems
}

/// Writes the standalone workspace into `rust` (the staged `src/rust`, which already holds the
/// binding's sources): de-workspaced manifests, the copied crates, the workspace root.
fn stage_workspace(root: &Path, rust: &Path) -> Result<()> {
    let ws = Workspace::parse(&read(&root.join("Cargo.toml"))?)?;
    let binding = Path::new(RPKG).join(BINDING);
    // Staged location (relative to `rust`) of each workspace crate, by its directory in the root.
    let locate = |dir: &Path| -> Result<PathBuf> {
        let manifest = read(&root.join(dir).join("Cargo.toml"))?;
        let doc: DocumentMut = manifest
            .parse()
            .with_context(|| format!("parsing {}/Cargo.toml", dir.display()))?;
        let name = doc["package"]["name"]
            .as_str()
            .with_context(|| format!("{}: no package.name", dir.display()))?;
        Ok(Path::new(STAGED_CRATES).join(name))
    };

    let mut staged: BTreeMap<PathBuf, PathBuf> =
        BTreeMap::from([(binding.clone(), PathBuf::new())]);
    let mut todo = vec![binding.clone()];
    let mut binding_manifest = None;
    while let Some(dir) = todo.pop() {
        let here = staged[&dir].clone();
        let text = read(&root.join(&dir).join("Cargo.toml"))?;
        let member = standalone_manifest(&text, &ws, &dir, &here, &locate)
            .with_context(|| format!("rewriting {}/Cargo.toml", dir.display()))?;
        for dep in member.path_dependencies {
            if !staged.contains_key(&dep) {
                staged.insert(dep.clone(), locate(&dep)?);
                todo.push(dep);
            }
        }
        if dir == binding {
            binding_manifest = Some(member.manifest);
        } else {
            let to = rust.join(&here);
            ensure!(
                !to.exists(),
                "two workspace crates would be staged at {}",
                here.display()
            );
            copy_files(root, &git_files(root, &dir)?, &dir, CRATE_SKIPS, &to)?;
            write(&to.join("Cargo.toml"), &member.manifest)?;
        }
    }
    let members: Vec<String> = staged
        .values()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| slash(p))
        .collect();
    let manifest = with_workspace_root(
        &binding_manifest.expect("the binding is staged first"),
        &ws,
        &members,
    )?;
    write(&rust.join("Cargo.toml"), &manifest)
}

/// What the root manifest lends its members.
#[derive(Debug)]
struct Workspace {
    package: Table,
    dependencies: Table,
    lints: Option<Table>,
    profiles: Table,
    resolver: Option<String>,
}

impl Workspace {
    fn parse(text: &str) -> Result<Self> {
        let doc: DocumentMut = text.parse().context("parsing the root Cargo.toml")?;
        let ws = doc
            .get("workspace")
            .and_then(Item::as_table)
            .context("the root Cargo.toml has no [workspace]")?;
        for unsupported in ["patch", "replace"] {
            ensure!(
                doc.get(unsupported).is_none(),
                "dist does not carry the root's [{unsupported}] into the tarball"
            );
        }
        let table =
            |item: Option<&Item>| item.and_then(Item::as_table).cloned().unwrap_or_default();
        Ok(Self {
            package: table(ws.get("package")),
            dependencies: table(ws.get("dependencies")),
            lints: ws.get("lints").and_then(Item::as_table).cloned(),
            profiles: table(doc.get("profile")),
            resolver: ws.get("resolver").and_then(Item::as_str).map(str::to_owned),
        })
    }
}

/// A member's manifest made standalone, and the workspace crates it depends on.
#[derive(Debug)]
struct Standalone {
    manifest: String,
    /// Directories (relative to the root) of the crates it reaches by path.
    path_dependencies: Vec<PathBuf>,
}

/// Rewrites the manifest of the member in `dir` (relative to the root workspace) for a staged
/// workspace where it lives in `here` and where `locate` says where each crate of the root
/// (by its directory) lives. Both staged paths are relative to the staged workspace root.
/// Inherited fields, dependencies and lints take the workspace's values; path dependencies
/// point at the staged copies; dev-dependencies, tests, benches and examples are dropped.
fn standalone_manifest(
    text: &str,
    ws: &Workspace,
    dir: &Path,
    here: &Path,
    locate: &dyn Fn(&Path) -> Result<PathBuf>,
) -> Result<Standalone> {
    let mut doc: DocumentMut = text.parse()?;
    ensure!(
        doc.get("workspace").is_none(),
        "a member has its own [workspace]"
    );

    let package = doc
        .get_mut("package")
        .and_then(Item::as_table_mut)
        .context("no [package]")?;
    let keys: Vec<String> = package.iter().map(|(k, _)| k.to_owned()).collect();
    for key in keys {
        if !inherits(&package[&key]) {
            continue;
        }
        ensure!(
            !matches!(key.as_str(), "readme" | "license-file"),
            "inheriting package.{key} (a path) is not supported"
        );
        let mut value = ws
            .package
            .get(&key)
            .and_then(Item::as_value)
            .with_context(|| format!("package.{key}: not in [workspace.package]"))?
            .clone();
        value.decor_mut().clear();
        package[&key] = Item::Value(value);
    }

    for target_kind in ["test", "bench", "example"] {
        doc.remove(target_kind);
    }
    doc.remove("dev-dependencies");
    let mut path_dependencies = Vec::new();
    let mut rewrite = |deps: &mut Table| -> Result<()> {
        let names: Vec<String> = deps.iter().map(|(k, _)| k.to_owned()).collect();
        for name in names {
            if let Some(spec) = standalone_dependency(
                &name,
                &deps[&name],
                ws,
                dir,
                here,
                locate,
                &mut path_dependencies,
            )
            .with_context(|| format!("dependency {name}"))?
            {
                deps[&name] = Item::Value(Value::InlineTable(spec)); // keeps the key's comments
            }
        }
        Ok(())
    };
    for kind in BUILD_DEPENDENCY_TABLES {
        if let Some(deps) = doc.get_mut(kind) {
            rewrite(
                deps.as_table_mut()
                    .with_context(|| format!("[{kind}] is not a table"))?,
            )?;
        }
    }
    if let Some(targets) = doc.get_mut("target").and_then(Item::as_table_mut) {
        for (_, platform) in targets.iter_mut() {
            let platform = platform
                .as_table_mut()
                .context("[target.*] is not a table")?;
            platform.remove("dev-dependencies");
            for kind in BUILD_DEPENDENCY_TABLES {
                if let Some(deps) = platform.get_mut(kind) {
                    rewrite(
                        deps.as_table_mut()
                            .with_context(|| format!("[target.*.{kind}] is not a table"))?,
                    )?;
                }
            }
        }
    }

    if doc.get("lints").is_some_and(inherits) {
        let lints = ws
            .lints
            .as_ref()
            .context("[lints] inherits, but the root has no [workspace.lints]")?;
        let position = doc["lints"].as_table().and_then(Table::position);
        let mut table = fresh_table(lints, position);
        table.set_implicit(true);
        doc.insert("lints", Item::Table(table));
    }
    path_dependencies.sort();
    path_dependencies.dedup();
    Ok(Standalone {
        manifest: doc.to_string(),
        path_dependencies,
    })
}

/// The concrete spec of dependency `name` (`None`: keep it as written).
fn standalone_dependency(
    name: &str,
    item: &Item,
    ws: &Workspace,
    dir: &Path,
    here: &Path,
    locate: &dyn Fn(&Path) -> Result<PathBuf>,
    path_dependencies: &mut Vec<PathBuf>,
) -> Result<Option<InlineTable>> {
    let Some(written) = item.as_table_like() else {
        return Ok(None); // `name = "1"`
    };
    // Path of the dependency relative to the root workspace, and the spec to rewrite.
    let (mut spec, path) = if inherits(item) {
        let mut spec = match ws
            .dependencies
            .get(name)
            .with_context(|| "not in [workspace.dependencies]")?
        {
            Item::Value(Value::String(version)) => {
                let mut t = InlineTable::new();
                t.insert("version", Value::from(version.value().as_str()));
                t
            }
            other => other
                .as_table_like()
                .context("[workspace.dependencies] entry is not a table")?
                .iter()
                .fold(InlineTable::new(), |mut t, (k, v)| {
                    if let Some(v) = v.as_value() {
                        t.insert(k, v.clone());
                    }
                    t
                }),
        };
        for (key, value) in written.iter() {
            match key {
                "workspace" => {}
                "optional" => {
                    spec.insert(
                        "optional",
                        value.as_value().context("optional is not a value")?.clone(),
                    );
                }
                "features" => {
                    let mut features: BTreeSet<String> = strings(spec.get("features"))?;
                    features.extend(strings(value.as_value())?);
                    spec.insert(
                        "features",
                        Value::Array(features.into_iter().collect::<Array>()),
                    );
                }
                // cargo lets a member turn default features on, never off.
                "default-features" | "default_features" if value.as_bool() == Some(true) => {
                    spec.remove("default-features");
                    spec.remove("default_features");
                }
                "default-features" | "default_features" => {}
                other => bail!("`{other}` next to `workspace = true` is not supported"),
            }
        }
        let path = spec
            .get("path")
            .and_then(Value::as_str)
            .map(|p| normalize(Path::new(p)))
            .transpose()?;
        (spec, path)
    } else {
        let Some(path) = written.get("path").and_then(Item::as_str) else {
            return Ok(None);
        };
        let spec = written.iter().fold(InlineTable::new(), |mut t, (k, v)| {
            if let Some(v) = v.as_value() {
                t.insert(k, v.clone());
            }
            t
        });
        (spec, Some(normalize(&dir.join(path))?))
    };
    if let Some(path) = path {
        let staged = locate(&path)?;
        spec.insert("path", Value::from(slash(&relative(here, &staged))));
        path_dependencies.push(path);
    }
    for (_, value) in spec.iter_mut() {
        value.decor_mut().clear();
    }
    spec.fmt();
    Ok(Some(spec))
}

/// `key.workspace = true` or `key = { workspace = true, ... }`.
fn inherits(item: &Item) -> bool {
    item.as_table_like()
        .and_then(|t| t.get("workspace"))
        .and_then(Item::as_bool)
        == Some(true)
}

fn strings(value: Option<&Value>) -> Result<BTreeSet<String>> {
    let Some(value) = value else {
        return Ok(BTreeSet::new());
    };
    let array = value.as_array().context("features is not an array")?;
    array
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .context("a feature is not a string")
        })
        .collect()
}

/// A copy of `table` (values and sub-tables) without the source document's formatting and
/// positions, so it prints in place in another document.
fn fresh_table(table: &Table, position: Option<isize>) -> Table {
    let mut out = Table::new();
    out.set_position(position);
    for (key, item) in table.iter() {
        match item {
            Item::Table(sub) => {
                out.insert(key, Item::Table(fresh_table(sub, position)));
            }
            Item::Value(value) => {
                let mut value = value.clone();
                value.decor_mut().clear();
                out.insert(key, Item::Value(value));
            }
            other => {
                out.insert(key, other.clone());
            }
        }
    }
    out
}

/// The binding's standalone manifest with a `[workspace]` root over `members` and the build
/// profile (and the profiles it inherits from) of the root workspace.
fn with_workspace_root(manifest: &str, ws: &Workspace, members: &[String]) -> Result<String> {
    let mut doc: DocumentMut = manifest.parse()?;
    let mut workspace = Table::new();
    if let Some(resolver) = &ws.resolver {
        workspace.insert("resolver", toml_edit::value(resolver.as_str()));
    }
    let mut list: Array = std::iter::once(".".to_owned())
        .chain(members.iter().cloned())
        .collect();
    list.iter_mut()
        .for_each(|v| v.decor_mut().set_prefix("\n    "));
    list.set_trailing(",\n");
    workspace.insert("members", toml_edit::value(list));
    workspace
        .decor_mut()
        .set_prefix("\n# Written by `cargo xtask dist`: this tarball's own workspace.\n");
    doc.insert("workspace", Item::Table(workspace));

    let mut profiles = Table::new();
    profiles.set_implicit(true);
    let mut name = PROFILE.to_owned();
    loop {
        let profile = ws.profiles.get(&name).and_then(Item::as_table);
        let Some(profile) = profile else {
            ensure!(
                name != PROFILE,
                "the root Cargo.toml has no [profile.{PROFILE}]"
            );
            break; // a built-in profile left as cargo defines it
        };
        let mut copy = fresh_table(profile, None);
        copy.remove("package"); // per-package overrides name crates of the root workspace
        profiles.insert(&name, Item::Table(copy));
        match profile.get("inherits").and_then(Item::as_str) {
            Some(parent) if !profiles.contains_key(parent) => name = parent.to_owned(),
            _ => break,
        }
    }
    doc.insert("profile", Item::Table(profiles));
    Ok(doc.to_string())
}

/// `src/Makevars` for the tarball: the checkout's, with cargo told to build offline, from the
/// vendored crates (`--config` names the config file: cargo looks for `.cargo/config.toml`
/// only from its working directory up, and make runs in `src/`), and exactly the lock file.
/// When cargo builds inside the package (no `CARGO_TARGET_DIR`), the build output is removed
/// once the library is linked and the worker copied: `R CMD check` inspects the sources after
/// installing them in place and would report the C files cargo's build scripts leave there.
fn offline_makevars(original: &str) -> Result<String> {
    ensure!(
        original.contains("$(CARGO_OFFLINE)"),
        "src/Makevars no longer passes $(CARGO_OFFLINE) to cargo, so dist cannot make it build offline"
    );
    // make runs in src/, so the binding crate is $(CURDIR)/rust.
    let crate_dir = BINDING
        .strip_prefix("src/")
        .expect("the binding lives in src/");
    let mut out = original.to_owned();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "\n# Added by `cargo xtask dist`: build from the crates vendored in {crate_dir}/vendor, offline.\n\
         CARGO_OFFLINE = --offline --locked --config=$(CURDIR)/{crate_dir}/.cargo/config.toml\n"
    ));
    let has_target = |t: &str| original.lines().any(|l| l.starts_with(&format!("{t}:")));
    if original.contains("$(TARGET_DIR)") && has_target("all") && has_target("worker") {
        out.push_str(&format!(
            "\n# Added by `cargo xtask dist`: leave no build output in the unpacked package.\n\
             all: dist-tidy\n\
             dist-tidy: $(SHLIB) worker\n\
             \t$(if $(filter $(CURDIR)/{crate_dir}/target,$(TARGET_DIR)),rm -Rf \"$(TARGET_DIR)\")\n\
             .PHONY: dist-tidy\n"
        ));
    }
    Ok(out)
}

/// `cargo vendor` into `rust/vendor`, and the config that makes cargo use it.
fn vendor(rust: &Path) -> Result<()> {
    let vendor = rust.join("vendor");
    crate::run(
        crate::cargo()
            .args(["vendor", "--quiet", "--manifest-path"])
            .arg(rust.join("Cargo.toml"))
            .arg(&vendor)
            .stdout(std::process::Stdio::null()),
    )?;
    std::fs::create_dir_all(rust.join(".cargo"))?;
    write(&rust.join(".cargo/config.toml"), CARGO_CONFIG)
}

/// Fails unless every registry package of `staged` is locked in `root` at the same version
/// (`cargo vendor` only drops the packages the staged workspace does not use).
fn same_locked_versions(root: &str, staged: &str) -> Result<()> {
    fn packages(lock: &str) -> Result<BTreeSet<(String, String)>> {
        let doc: DocumentMut = lock.parse().context("parsing Cargo.lock")?;
        let Some(list) = doc.get("package").and_then(Item::as_array_of_tables) else {
            return Ok(BTreeSet::new());
        };
        Ok(list
            .iter()
            .filter(|p| p.get("source").is_some())
            .map(|p| {
                let field = |k: &str| {
                    p.get(k)
                        .and_then(Item::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                (field("name"), field("version"))
            })
            .collect())
    }
    let root = packages(root)?;
    let changed: Vec<String> = packages(staged)?
        .difference(&root)
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    ensure!(
        changed.is_empty(),
        "the staged lock file has versions the root one does not: {}",
        changed.join(", ")
    );
    Ok(())
}

/// Makes `tarball` hold the staged `src/rust` tree byte for byte. `R CMD build` leaves out
/// some files by name wherever they are (`.gitmodules`, `.gitignore`, folders named `check` or
/// `old`, ...; see `tools:::.build_packages`) and rewrites sources with CRLF line endings, but
/// cargo refuses a vendored crate unless every file of its `.cargo-checksum.json` is there
/// unchanged. So: unpack the tarball into `scratch`, put back what `R CMD build` dropped or
/// changed under `src/rust`, pack it again, and check the result.
fn complete_tarball(tarball: &Path, pkg: &Path, package: &str, scratch: &Path) -> Result<()> {
    let unpack = || -> Result<PathBuf> {
        if scratch.exists() {
            std::fs::remove_dir_all(scratch)?;
        }
        std::fs::create_dir_all(scratch)?;
        crate::run(
            Command::new("tar")
                .arg("-xzf")
                .arg(tarball)
                .arg("-C")
                .arg(scratch),
        )?;
        Ok(scratch.join(package).join(BINDING))
    };
    let staged = pkg.join(BINDING);
    let unpacked = unpack()?;
    let (files, differ) = differing_files(&staged, &unpacked)?;
    if !differ.is_empty() {
        eprintln!(
            "R CMD build left out or changed {} of the {files} files under {BINDING}; putting them back: {}",
            differ.len(),
            differ
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for rel in &differ {
            let to = unpacked.join(rel);
            std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
            std::fs::copy(staged.join(rel), &to)?;
        }
        // ustar, like R's own tar: fails on a path it cannot store portably.
        crate::run(
            Command::new("tar")
                .args([
                    "--format=ustar",
                    "--sort=name",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "-czf",
                ])
                .arg(tarball)
                .arg("-C")
                .arg(scratch)
                .arg(package),
        )?;
        let (_, still) = differing_files(&staged, &unpack()?)?;
        ensure!(
            still.is_empty(),
            "the repacked tarball still lacks {}",
            still.len()
        );
    }
    std::fs::remove_dir_all(scratch)?;
    eprintln!("the tarball holds all {files} files of the staged {BINDING}");
    Ok(())
}

/// The number of files under `staged`, and those (relative) that `unpacked` lacks or differs in.
fn differing_files(staged: &Path, unpacked: &Path) -> Result<(usize, Vec<PathBuf>)> {
    let mut files = 0usize;
    let mut differ = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(staged.join(&rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(rel);
            } else {
                files += 1;
                match std::fs::read(unpacked.join(&rel)) {
                    Ok(bytes) if bytes == std::fs::read(entry.path())? => {}
                    _ => differ.push(rel),
                }
            }
        }
    }
    differ.sort();
    Ok((files, differ))
}

/// Installs `tarball` into a fresh library as a user with no checkout, no registry cache and no
/// network would (empty `CARGO_HOME`, `CARGO_NET_OFFLINE`, no shared target directory), then
/// loads it and finds the worker binary.
fn prove_offline_install(tarball: &Path, package: &str, scratch: &Path) -> Result<()> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    let lib = scratch.join("lib");
    let cargo_home = scratch.join("cargo-home");
    std::fs::create_dir_all(&lib)?;
    std::fs::create_dir_all(&cargo_home)?;
    crate::run(
        Command::new("R")
            .args(["CMD", "INSTALL"])
            // `--library=`: R CMD INSTALL takes `--library DIR` for a package named DIR.
            .arg(format!("--library={}", lib.display()))
            .arg(tarball)
            .current_dir(scratch)
            .env("CARGO_HOME", &cargo_home)
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    // Loaded from the fresh library (not another one on the path), with its worker binary.
    let check = format!(
        "lib <- normalizePath({lib:?}); library({package}, lib.loc = lib); \
         stopifnot(dirname(normalizePath(find.package('{package}'))) == lib, \
         file.exists(system.file('bin', 'starburst-worker', package = '{package}', lib.loc = lib)))",
        lib = lib.display().to_string()
    );
    crate::run(
        Command::new("Rscript")
            .args(["-e", &check])
            .current_dir(scratch),
    )?;
    std::fs::remove_dir_all(scratch)?;
    eprintln!("the tarball installs offline and loads");
    Ok(())
}

/// `from` → `to`, both relative to the same folder and made of plain names.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = from.components().collect();
    let to: Vec<Component<'_>> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `path` (relative to the root workspace) without `.` and `..`; fails if it leaves the root.
fn normalize(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => ensure!(out.pop(), "{} leaves the workspace", path.display()),
            Component::Normal(name) => out.push(name),
            _ => bail!("{} is not relative to the workspace", path.display()),
        }
    }
    Ok(out)
}

fn slash(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// A field of an R DESCRIPTION file (single-line values).
fn description_field(description: &str, field: &str) -> Result<String> {
    description
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
        .filter(|v| !v.is_empty())
        .with_context(|| format!("DESCRIPTION has no {field}"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = r#"
[workspace]
resolver = "3"
members = ["crates/*", "rpkg/src/rust"]

[workspace.package]
version = "0.1.0"
edition = "2024"
license = "MIT"

[workspace.dependencies]
core = { path = "crates/core", version = "0.1.0" }
bytes = { version = "1", features = ["serde"] }
tokio = { version = "1", default-features = false, features = ["rt", "fs"] }
anyhow = "1"

[workspace.lints.rust]
unsafe_code = "deny"

[workspace.lints.clippy]
dbg_macro = "warn"

[profile.release]
lto = "thin"

[profile.dev.package."*"]
opt-level = 1

[profile.rpkg]
inherits = "release"
lto = false
"#;

    const MEMBER: &str = r#"[package]
name = "app"
version.workspace = true
edition.workspace = true
license = { workspace = true }
publish = false

[[test]]
name = "slow"
path = "tests/slow.rs"

[dependencies]
anyhow.workspace = true
bytes.workspace = true
core = { workspace = true, optional = true }
# a sibling reached by its own path
helper = { path = "../helper", version = "0.1.0" }
serde = "1"
tokio = { workspace = true, features = ["signal", "rt"] }

[dev-dependencies]
proptest = "1"

[target.'cfg(unix)'.dependencies]
libc = { version = "0.2" }
core = { workspace = true }

[target.'cfg(unix)'.dev-dependencies]
tempfile = "3"

[lints]
workspace = true
"#;

    fn locate(dir: &Path) -> Result<PathBuf> {
        Ok(Path::new("crates").join(dir.file_name().context("no name")?))
    }

    fn rewrite(here: &str) -> Standalone {
        let ws = Workspace::parse(ROOT).unwrap();
        standalone_manifest(
            MEMBER,
            &ws,
            Path::new("crates/app"),
            Path::new(here),
            &locate,
        )
        .unwrap()
    }

    #[test]
    fn standalone_manifest_resolves_inheritance() {
        let out = rewrite("crates/app");
        let doc: DocumentMut = out.manifest.parse().unwrap();
        assert!(
            !out.manifest.contains("workspace = true"),
            "{}",
            out.manifest
        );
        assert!(!out.manifest.contains(".workspace"), "{}", out.manifest);
        assert_eq!(doc["package"]["version"].as_str(), Some("0.1.0"));
        assert_eq!(doc["package"]["edition"].as_str(), Some("2024"));
        assert_eq!(doc["package"]["license"].as_str(), Some("MIT"));
        assert_eq!(doc["package"]["publish"].as_bool(), Some(false));
        let deps = &doc["dependencies"];
        assert_eq!(deps["anyhow"]["version"].as_str(), Some("1"));
        assert_eq!(
            deps["bytes"]["features"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["serde"]
        );
        assert_eq!(
            deps["serde"].as_str(),
            Some("1"),
            "plain dependencies stay as written"
        );
        let tokio = &deps["tokio"];
        assert_eq!(tokio["default-features"].as_bool(), Some(false));
        assert_eq!(
            tokio["features"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["fs", "rt", "signal"]
        );
        assert_eq!(
            out.manifest
                .matches("# a sibling reached by its own path")
                .count(),
            1,
            "comments survive"
        );
        let lints = &doc["lints"];
        assert_eq!(lints["rust"]["unsafe_code"].as_str(), Some("deny"));
        assert_eq!(lints["clippy"]["dbg_macro"].as_str(), Some("warn"));
        assert!(
            out.manifest.find("[lints.rust]").unwrap()
                > out.manifest.find("[dependencies]").unwrap()
        );
    }

    #[test]
    fn standalone_manifest_relocates_path_dependencies() {
        let out = rewrite("crates/app");
        let doc: DocumentMut = out.manifest.parse().unwrap();
        let core = &doc["dependencies"]["core"];
        assert_eq!(core["path"].as_str(), Some("../core"));
        assert_eq!(core["version"].as_str(), Some("0.1.0"));
        assert_eq!(core["optional"].as_bool(), Some(true));
        assert_eq!(
            doc["dependencies"]["helper"]["path"].as_str(),
            Some("../helper")
        );
        assert_eq!(
            doc["target"]["cfg(unix)"]["dependencies"]["core"]["path"].as_str(),
            Some("../core")
        );
        assert_eq!(
            out.path_dependencies,
            [Path::new("crates/core"), Path::new("crates/helper")]
        );
        // Seen from the staged workspace root (the binding crate's place).
        let doc: DocumentMut = rewrite("").manifest.parse().unwrap();
        assert_eq!(
            doc["dependencies"]["core"]["path"].as_str(),
            Some("crates/core")
        );
    }

    #[test]
    fn standalone_manifest_drops_what_builds_never_need() {
        let out = rewrite("crates/app");
        let doc: DocumentMut = out.manifest.parse().unwrap();
        assert!(doc.get("dev-dependencies").is_none());
        assert!(doc.get("test").is_none());
        assert!(doc["target"]["cfg(unix)"].get("dev-dependencies").is_none());
        assert!(!out.manifest.contains("proptest") && !out.manifest.contains("tempfile"));
    }

    #[test]
    fn standalone_manifest_rejects_what_it_cannot_carry() {
        let ws = Workspace::parse(ROOT).unwrap();
        let escape = "[package]\nname = \"x\"\nversion = \"1.0.0\"\n[dependencies]\nfar = { path = \"../../../elsewhere\" }\n";
        assert!(
            standalone_manifest(
                escape,
                &ws,
                Path::new("crates/x"),
                Path::new("crates/x"),
                &locate
            )
            .is_err()
        );
        let unknown = "[package]\nname = \"x\"\nversion.workspace = true\n[dependencies]\nnope.workspace = true\n";
        assert!(
            standalone_manifest(
                unknown,
                &ws,
                Path::new("crates/x"),
                Path::new("crates/x"),
                &locate
            )
            .is_err()
        );
    }

    #[test]
    fn workspace_root_lists_members_and_copies_the_profile_chain() {
        let ws = Workspace::parse(ROOT).unwrap();
        let binding = rewrite("").manifest;
        let out = with_workspace_root(&binding, &ws, &["crates/app".into(), "crates/core".into()])
            .unwrap();
        let doc: DocumentMut = out.parse().unwrap();
        let members: Vec<&str> = doc["workspace"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(members, [".", "crates/app", "crates/core"]);
        assert_eq!(doc["workspace"]["resolver"].as_str(), Some("3"));
        assert_eq!(doc["profile"]["rpkg"]["inherits"].as_str(), Some("release"));
        assert_eq!(doc["profile"]["rpkg"]["lto"].as_bool(), Some(false));
        assert_eq!(doc["profile"]["release"]["lto"].as_str(), Some("thin"));
        assert!(
            doc["profile"].get("dev").is_none(),
            "only the rpkg chain is copied"
        );
    }

    #[test]
    fn makevars_builds_offline_from_the_vendored_crates() {
        let original = "TARGET_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/rust/target)\n\
                        CARGO_FLAGS = --target-dir=$(TARGET_DIR) $(CARGO_OFFLINE)\n\
                        all: $(SHLIB) worker\n\
                        worker: $(STATLIB)\n\tcargo build $(CARGO_FLAGS)";
        let staged = offline_makevars(original).unwrap();
        assert!(staged.starts_with(original));
        assert!(staged.contains(
            "\nCARGO_OFFLINE = --offline --locked --config=$(CURDIR)/rust/.cargo/config.toml\n"
        ));
        assert!(staged.contains("\nall: dist-tidy\ndist-tidy: $(SHLIB) worker\n\t$(if $(filter $(CURDIR)/rust/target,$(TARGET_DIR)),rm -Rf \"$(TARGET_DIR)\")\n"));
        // Without the names the tidy rule relies on, only the offline flags are added.
        let bare = offline_makevars("all:\n\tcargo build $(CARGO_OFFLINE)\n").unwrap();
        assert!(bare.contains("CARGO_OFFLINE = --offline") && !bare.contains("dist-tidy"));
        assert!(offline_makevars("all:\n\tcargo build\n").is_err());
    }

    #[test]
    fn lock_versions_must_match() {
        let root = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+x\"\n\n[[package]]\nname = \"b\"\nversion = \"2.0.0\"\nsource = \"registry+x\"\n";
        let pruned = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+x\"\n\n[[package]]\nname = \"local\"\nversion = \"0.1.0\"\n";
        assert!(same_locked_versions(root, pruned).is_ok());
        let bumped = "[[package]]\nname = \"a\"\nversion = \"1.0.1\"\nsource = \"registry+x\"\n";
        assert!(same_locked_versions(root, bumped).is_err());
    }

    #[test]
    fn vignettes_are_built_unless_the_description_says_no() {
        let description = "Package: starburst\nVersion: 0.1.0\n";
        assert!(builds_vignettes(description));
        for no in ["no", "FALSE", "0"] {
            assert!(!builds_vignettes(&format!(
                "{description}BuildVignettes: {no}\n"
            )));
        }
        for yes in ["yes", "TRUE", "1"] {
            assert!(builds_vignettes(&format!(
                "{description}BuildVignettes: {yes}\n"
            )));
        }
    }

    /// The layout `R CMD build` gives a package with a vignette with code and one without
    /// (whose empty tangled code it drops), as `tar -t` lists it.
    const BUILT: &str = "pkg/DESCRIPTION\npkg/build/\npkg/build/vignette.rds\npkg/inst/\n\
                         pkg/inst/doc/\npkg/inst/doc/intro.R\npkg/inst/doc/intro.Rmd\n\
                         pkg/inst/doc/intro.html\npkg/inst/doc/notes.Rmd\n\
                         pkg/inst/doc/notes.html\npkg/vignettes/\npkg/vignettes/intro.Rmd\n\
                         pkg/vignettes/notes.Rmd\n";

    #[test]
    fn vignette_listing_and_layout() {
        let vignettes =
            parse_vignette_listing("intro.Rmd\tintro.html\tintro.R\nnotes.Rmd\tnotes.html\t\n")
                .unwrap();
        assert_eq!(
            vignettes,
            [
                Vignette {
                    source: "intro.Rmd".into(),
                    output: "intro.html".into(),
                    code: Some("intro.R".into()),
                },
                Vignette {
                    source: "notes.Rmd".into(),
                    output: "notes.html".into(),
                    code: None,
                },
            ]
        );
        assert!(parse_vignette_listing("").unwrap().is_empty());
        assert!(parse_vignette_listing("intro.Rmd\tintro.html\n").is_err());
        assert!(parse_vignette_listing("intro.Rmd\t\tintro.R\n").is_err());

        let problems =
            |files: &str| vignette_layout_problems("pkg", &vignettes, &files.lines().collect());
        assert!(problems(BUILT).is_empty(), "{:?}", problems(BUILT));
        // As `R CMD build --no-build-vignettes` ships the unbuilt vignettes.
        let unbuilt = "pkg/DESCRIPTION\npkg/vignettes/intro.Rmd\npkg/vignettes/notes.Rmd\n";
        assert_eq!(
            problems(unbuilt),
            [
                "no build/vignette.rds",
                "no inst/doc/intro.Rmd",
                "no inst/doc/intro.html",
                "no inst/doc/intro.R",
                "no inst/doc/notes.Rmd",
                "no inst/doc/notes.html",
            ]
        );
        // Outputs built in place but not moved.
        let left = format!("{BUILT}pkg/vignettes/intro.html\npkg/vignettes/intro.R\n");
        assert_eq!(
            problems(&left),
            [
                "vignettes/intro.html left behind",
                "vignettes/intro.R left behind"
            ]
        );
    }

    #[test]
    fn paths_and_description() {
        assert_eq!(
            relative(Path::new("crates/a"), Path::new("crates/b")),
            Path::new("../b")
        );
        assert_eq!(
            relative(Path::new(""), Path::new("crates/b")),
            Path::new("crates/b")
        );
        assert_eq!(
            relative(Path::new("crates/a"), Path::new("crates/a")),
            Path::new(".")
        );
        assert_eq!(
            normalize(Path::new("crates/a/../b/./c")).unwrap(),
            Path::new("crates/b/c")
        );
        assert!(normalize(Path::new("crates/../../x")).is_err());
        let description = "Package: starburst\nTitle: x\nVersion: 0.1.0\n";
        assert_eq!(description_field(description, "Version").unwrap(), "0.1.0");
        assert_eq!(
            description_field(description, "Package").unwrap(),
            "starburst"
        );
        assert!(description_field(description, "License").is_err());
    }
}
