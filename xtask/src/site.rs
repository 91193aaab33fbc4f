//! `cargo xtask site`: the R package's pkgdown site, built offline into
//! `$CARGO_TARGET_DIR/site` and opened page by page in headless Chromium
//! (`xtask/site/check_site.py`).
//!
//! pkgdown builds from a staging copy of `rpkg/` in `$CARGO_TARGET_DIR/site-src`, never from
//! the checkout (which stays clean): the copy gets the repository's README as the package's
//! home page, with its links to repository files that are not part of the site (ARCHITECTURE.md,
//! xtask/...) turned into plain file names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{project_root, r_libs, run, target_dir};

/// Builds the site of the package installed in `lib` and checks it in a browser; returns the
/// site's folder.
pub fn site(lib: &Path) -> Result<PathBuf> {
    let t = Instant::now();
    let root = project_root();
    let work = target_dir();
    let stage = work.join("site-src").join("starburst");
    let dest = work.join("site");
    let artifacts = work.join("site-artifacts");

    eprintln!(
        "site [1/4]: staging rpkg/ and the README in {}",
        stage.display()
    );
    stage_package(&root, &stage)?;

    eprintln!("site [2/4]: building with pkgdown into {}", dest.display());
    // pkgdown leaves files of earlier builds (a removed topic's page) in place.
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    run(Command::new("Rscript")
        .arg(root.join("xtask").join("r").join("site.R"))
        .arg(&stage)
        .arg(&dest)
        .current_dir(&stage)
        .env("R_LIBS", r_libs(lib)))?;

    eprintln!("site [3/4]: testing the browser test (xtask/site)");
    let site_dir = root.join("xtask").join("site");
    run(Command::new("python3")
        .args(["-m", "unittest", "discover", "-s"])
        .arg(&site_dir)
        .args(["-p", "test_*.py"])
        .env("PYTHONDONTWRITEBYTECODE", "1"))?;

    eprintln!("site [4/4]: opening every page in headless Chromium");
    run(Command::new("python3")
        .arg(site_dir.join("check_site.py"))
        .arg(&dest)
        .arg("--screenshots")
        .arg(&artifacts)
        .env("PYTHONDONTWRITEBYTECODE", "1"))?;

    eprintln!(
        "site: {} (open {}) in {:.0}s",
        dest.display(),
        dest.join("index.html").display(),
        t.elapsed().as_secs_f64()
    );
    Ok(dest)
}

/// Top-level entries of `rpkg/` the site does not need: the Rust sources with their build
/// tree, the tests, and a `docs/` that a pkgdown run inside the checkout would have made.
const NOT_STAGED: &[&str] = &["src", "tests", "docs"];

/// Lays a fresh copy of `rpkg/` at `stage`, with the repository's README.
fn stage_package(root: &Path, stage: &Path) -> Result<()> {
    if stage.exists() {
        std::fs::remove_dir_all(stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    std::fs::create_dir_all(stage)?;
    let rpkg = root.join("rpkg");
    for entry in std::fs::read_dir(&rpkg).with_context(|| format!("reading {}", rpkg.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_STAGED.iter().any(|n| name == *n) {
            continue;
        }
        copy_tree(&entry.path(), &stage.join(&name))?;
    }
    if stage.join("README.md").exists() {
        bail!("rpkg/README.md exists: the site's home page is the repository's README.md");
    }
    let readme = std::fs::read_to_string(root.join("README.md")).context("reading README.md")?;
    let readme = unlink_repository_files(&readme, |path| root.join(path).exists());
    std::fs::write(stage.join("README.md"), readme)?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::metadata(from).with_context(|| format!("reading {}", from.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Markdown links whose target is a file of the repository (`[ARCHITECTURE.md](ARCHITECTURE.md)`,
/// as `is_repository_file` tells) become their text: the site has no such page. A link whose
/// text is the path becomes code (`` `ARCHITECTURE.md` ``); another keeps its text and names
/// the path after it. Links to the web or to anchors, images, and code (fenced blocks and
/// inline code spans) are left alone.
pub fn unlink_repository_files(
    markdown: &str,
    is_repository_file: impl Fn(&str) -> bool,
) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut fence: Option<String> = None;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|c| *c == '`' || *c == '~')
            .collect();
        let indent = line.len() - trimmed.len();
        if indent <= 3
            && marker.len() >= 3
            && marker.chars().all(|c| c == marker.as_bytes()[0] as char)
        {
            match &fence {
                None => fence = Some(marker),
                Some(open) if marker.starts_with(open.as_str()) => fence = None,
                Some(_) => {}
            }
            out.push_str(line);
            continue;
        }
        if fence.is_some() {
            out.push_str(line);
        } else {
            out.push_str(&unlink_line(line, &is_repository_file));
        }
    }
    out
}

fn unlink_line(line: &str, is_repository_file: &impl Fn(&str) -> bool) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'`' => {
                // An inline code span: copied as it is.
                let end = code_span_end(b, i);
                out.push_str(&line[i..end]);
                i = end;
            }
            b'[' if i == 0 || b[i - 1] != b'!' => {
                if let Some((text, target, end)) = link_at(line, i) {
                    let path = target.split('#').next().unwrap_or("");
                    if is_relative(target) && !path.is_empty() && is_repository_file(path) {
                        let bare = text.trim_matches('`');
                        if bare == path || bare == target {
                            out.push('`');
                            out.push_str(bare);
                            out.push('`');
                        } else {
                            out.push_str(&format!("{text} (`{path}`)"));
                        }
                    } else {
                        out.push_str(&line[i..end]);
                    }
                    i = end;
                } else {
                    out.push('[');
                    i += 1;
                }
            }
            _ => {
                let c = line[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// The end of the code span opening at `start` (a run of backticks), or the end of that run
/// when nothing closes it.
fn code_span_end(b: &[u8], start: usize) -> usize {
    let run = b[start..].iter().take_while(|c| **c == b'`').count();
    let mut j = start + run;
    while j < b.len() {
        if b[j] == b'`' {
            let n = b[j..].iter().take_while(|c| **c == b'`').count();
            if n == run {
                return j + n;
            }
            j += n;
        } else {
            j += 1;
        }
    }
    start + run
}

/// `[text](target)` at `start`: (text, target, end). Text may hold code spans, not brackets;
/// the target holds no whitespace or parentheses.
fn link_at(line: &str, start: usize) -> Option<(&str, &str, usize)> {
    let b = line.as_bytes();
    let mut j = start + 1;
    while j < b.len() && b[j] != b']' {
        match b[j] {
            b'[' | b'\n' => return None,
            b'`' => j = code_span_end(b, j),
            _ => j += 1,
        }
    }
    if j >= b.len() || b.get(j + 1) != Some(&b'(') {
        return None;
    }
    let text = &line[start + 1..j];
    let open = j + 2;
    let close = open + line[open..].find(')')?;
    let target = &line[open..close];
    if target.is_empty() || target.contains(|c: char| c.is_whitespace() || c == '(') {
        return None;
    }
    Some((text, target, close + 1))
}

fn is_relative(target: &str) -> bool {
    !(target.starts_with('#')
        || target.starts_with('/')
        || target.contains("://")
        || target.starts_with("mailto:"))
}

#[cfg(test)]
mod tests {
    use super::unlink_repository_files;

    fn unlink(md: &str) -> String {
        unlink_repository_files(md, |p| {
            [
                "ARCHITECTURE.md",
                "xtask/emulator/README.md",
                "crates/x/AWS_RULES.md",
            ]
            .contains(&p)
        })
    }

    #[test]
    fn links_to_repository_files_become_their_names() {
        assert_eq!(
            unlink("See [ARCHITECTURE.md](ARCHITECTURE.md) for the design.\n"),
            "See `ARCHITECTURE.md` for the design.\n"
        );
        assert_eq!(
            unlink("in [`crates/x/AWS_RULES.md`](crates/x/AWS_RULES.md).\n"),
            "in `crates/x/AWS_RULES.md`.\n"
        );
        assert_eq!(
            unlink("see [the emulator's notes](xtask/emulator/README.md#strict-mode)"),
            "see the emulator's notes (`xtask/emulator/README.md`)"
        );
    }

    #[test]
    fn other_links_code_and_images_stay() {
        for md in [
            "[future](https://future.futureverse.org) and [x](#emulator)\n",
            "[a page of the site](reference/starburst.html)\n",
            "![diagram](ARCHITECTURE.md)\n",
            "`[ARCHITECTURE.md](ARCHITECTURE.md)` in code\n",
            "```\n[ARCHITECTURE.md](ARCHITECTURE.md)\n```\n",
            "x[i](ARCHITECTURE.md is not a link target)\n",
            "unclosed [bracket and `code` … ünïcode\n",
        ] {
            assert_eq!(unlink(md), md);
        }
    }

    #[test]
    fn the_real_readme_keeps_no_link_to_a_repository_file() {
        let root = crate::project_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let out = unlink_repository_files(&readme, |p| root.join(p).exists());
        assert!(!out.contains("](ARCHITECTURE.md)"), "{out}");
        assert!(!out.contains("](xtask/"), "{out}");
        assert!(out.contains("[future](https://future.futureverse.org)"));
    }
}
