## Worker environments: the spec of this R session and its tag, the runtime
## choice, the manifest's binary repositories, and restore_environment() from a
## local CRAN-like repository (no container here; see test-containers.R for
## real images)

local_runtime_package <- function(.env = parent.frame()) {
  path <- file.path(withr::local_tempdir(.local_envir = .env),
                    "starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz")
  writeBin(charToRaw("not really a package, but hashed like one"), path)
  withr::local_envvar(STARBURST_RUNTIME_PACKAGE = path, .local_envir = .env)
  path
}

test_that("the environment's tag is stable and changes with the packages", {
  withr::local_options(starburst.renv_lock = tempfile())   # no lockfile
  environment_spec()   # loads what computing a spec needs, so the session's packages stay put
  a <- environment_spec()
  b <- environment_spec()
  expect_identical(a$tag, b$tag)
  expect_match(a$tag, "^env-r[0-9.]+-amd64-[0-9a-f]{16}$")
  ## an extra package (not shipped with R) makes another environment
  ip <- utils::installed.packages(fields = "Repository")
  unloaded <- setdiff(rownames(ip)[is.na(ip[, "Priority"]) & !is.na(ip[, "Repository"])],
                      c(loadedNamespaces(), "starburst"))
  skip_if(length(unloaded) == 0L, "every installed package is loaded")
  extra <- environment_spec(packages = unloaded[1])
  expect_false(identical(extra$tag, a$tag))
  expect_match(environment_spec(arch = "arm64")$tag, "-arm64-")
  ## so does another snapshot
  withr::local_options(starburst.snapshot = "2024-06-03")
  expect_false(identical(environment_spec()$tag, a$tag))
})

test_that("a renv.lock decides the packages, and packages workers cannot install are all named", {
  lock <- withr::local_tempfile(fileext = ".lock")
  writeLines('{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli", "Version": "3.6.3", "Source": "Repository", "Repository": "CRAN"}}}', lock)
  withr::local_options(starburst.renv_lock = lock)
  spec <- environment_spec()
  expect_match(spec$tag, "^env-r4.4.1-amd64-")
  expect_equal(spec$packages, 1L)
  writeLines('{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli"}}}', lock)
  err <- expect_error(environment_spec(), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "Packages.cli.Version")
  writeLines('{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"Biobase": {"Package": "Biobase", "Version": "2.64.0", "Source": "Bioconductor"},
                            "mine": {"Package": "mine", "Version": "0.1", "Source": "Local"}}}', lock)
  err <- expect_error(environment_spec(), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "Biobase 2.64.0 \\(Bioconductor\\), mine 0.1 \\(Local\\)")
})

test_that("the runtime is built from the binary package given, or refused with what to do", {
  local_runtime_package()
  rt <- runtime_choice("x86_64", r_version = "4.4.1")
  expect_match(rt$id, "^runtime-[0-9.]+-r4.4.1-amd64-[0-9a-f]{16}$")
  expect_equal(rt$source$build$base, "rocker/r-ver:4.4.1")
  expect_equal(rt$distribution$codename, "noble")
  expect_equal(rt$source$build$repository, "https://packagemanager.posit.co/cran/__linux__/noble/latest")
  expect_equal(runtime_choice("x86_64", r_version = "4.3.3")$distribution$codename, "jammy")
  withr::local_options(starburst.runtime_image = "public.ecr.aws/starburst/runtime:0.1.0-r4.4.1-amd64")
  expect_equal(runtime_choice("x86_64")$source, list(published = "public.ecr.aws/starburst/runtime:0.1.0-r4.4.1-amd64"))
  withr::local_options(starburst.runtime_image = NULL)
  withr::local_envvar(STARBURST_RUNTIME_PACKAGE = "/nonexistent/starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz")
  expect_error(runtime_choice("x86_64"), class = "starburst_runtime_unavailable")
  withr::local_envvar(STARBURST_RUNTIME_PACKAGE = "")
  err <- expect_error(runtime_choice("arm64"), class = "starburst_runtime_unavailable")
  expect_match(conditionMessage(err), "starburst.runtime_image")
  expect_error(environment_mode("docker"), class = "starburst_invalid_argument")
  expect_equal(environment_mode(), "sync")
})

test_that("on Linux the installed package is packed as the runtime's binary package", {
  skip_if_not(grepl("linux", R.version$os))
  withr::local_envvar(R_USER_CACHE_DIR = withr::local_tempdir(), STARBURST_RUNTIME_PACKAGE = "")
  path <- pack_installed_package()
  expect_match(basename(path), "^starburst_[0-9.]+_R_.*linux.*\\.tar\\.gz$")
  files <- utils::untar(path, list = TRUE)
  expect_true(all(c("starburst/DESCRIPTION", "starburst/bin/starburst-worker") %in% files))
  expect_identical(pack_installed_package(), path)   # cached
})

## A CRAN-like repository (file://) with a tiny package at two versions: 1.0.0
## current, 0.9.0 in the archive
local_test_repository <- function(.env = parent.frame()) {
  dir <- withr::local_tempdir(.local_envir = .env)
  contrib <- file.path(dir, "src", "contrib")
  dir.create(file.path(contrib, "Archive", "sbrestoretest"), recursive = TRUE)
  make <- function(version, dest) {
    src <- file.path(withr::local_tempdir(), "sbrestoretest")
    dir.create(file.path(src, "R"), recursive = TRUE)
    writeLines(c("Package: sbrestoretest", paste("Version:", version), "Title: Test",
                 "Description: A test package.", "License: MIT", "Author: a", "Maintainer: a <a@b.c>"),
               file.path(src, "DESCRIPTION"))
    writeLines(sprintf("answer <- function() \"%s\"", version), file.path(src, "R", "answer.R"))
    writeLines("export(answer)", file.path(src, "NAMESPACE"))
    owd <- setwd(dest)
    on.exit(setwd(owd))
    system2(file.path(R.home("bin"), "R"), c("CMD", "build", "--no-build-vignettes", shQuote(src)),
            stdout = FALSE, stderr = FALSE)
  }
  make("1.0.0", contrib)
  make("0.9.0", file.path(contrib, "Archive", "sbrestoretest"))
  tools::write_PACKAGES(contrib, type = "source")
  paste0("file://", dir)
}

test_that("a version is the same version however it is written", {
  v <- as.character(utils::packageVersion("jsonlite"))
  expect_true(installed_at("jsonlite", v))
  expect_true(installed_at("jsonlite", sub("\\.([0-9]+)$", "-\\1", v)))
  expect_false(installed_at("jsonlite", "0.0.1"))
  expect_false(installed_at("sbnotinstalled", "1.0.0"))
})

test_that("restore_environment() installs pinned packages, from the archive when needed, and names what it cannot", {
  repo <- local_test_repository()
  manifest <- withr::local_tempfile(fileext = ".json")
  write_manifest <- function(version) {
    writeLines(jsonlite::toJSON(list(
      packages = list(list(name = "sbrestoretest", version = version,
                           source = list(type = "repository", name = "CRAN"))),
      repositories = list(CRAN = repo),
      distribution = list(name = "debian", release = "12", codename = "bookworm")
    ), auto_unbox = TRUE), manifest)
  }
  restore <- function(lib) {
    callr::r(function(manifest, lib) {
      installed <- starburst:::restore_environment(manifest, lib, quiet = TRUE)
      list(installed = installed, answer = sbrestoretest::answer())
    }, list(manifest, lib), libpath = .libPaths())
  }
  write_manifest("1.0.0")
  lib <- withr::local_tempdir()
  expect_equal(restore(lib), list(installed = "sbrestoretest", answer = "1.0.0"))
  ## pinned and present: nothing to install
  expect_equal(restore(lib)$installed, character(0))

  write_manifest("0.9.0")
  expect_equal(restore(withr::local_tempdir())$answer, "0.9.0")

  write_manifest("2.0.0")
  err <- expect_error(restore(withr::local_tempdir()))
  expect_match(conditionMessage(err), "sbrestoretest 2.0.0 \\(got")
})

test_that("without a lockfile, the session's packages carry their sources: GitHub commits kept, local packages refused by name", {
  lib <- withr::local_tempdir()
  fake <- function(name, fields) {
    dir.create(file.path(lib, name, "Meta"), recursive = TRUE)
    writeLines(c(paste("Package:", name), "Version: 1.0.0", fields), file.path(lib, name, "DESCRIPTION"))
  }
  fake("sbgh", c("RemoteType: github", "RemoteUsername: me", "RemoteRepo: sbgh",
                 "RemoteSha: 0123456789abcdef0123456789abcdef01234567"))
  fake("sbcran", "Repository: CRAN")
  fake("sblocal", character(0))
  withr::local_libpaths(lib, action = "prefix")
  repos <- c(CRAN = "https://cloud.r-project.org")
  lock <- jsonlite::fromJSON(session_lock_json(c(sbcran = "1.0.0", sbgh = "1.0.0"), repos, "4.4.1"),
                             simplifyVector = FALSE)
  expect_equal(lock$Packages$sbgh$Source, "GitHub")
  expect_equal(lock$Packages$sbgh$RemoteSha, "0123456789abcdef0123456789abcdef01234567")
  expect_equal(lock$Packages$sbcran$Repository, "CRAN")
  withr::local_options(starburst.renv_lock = tempfile())
  spec <- environment_spec(packages = c("sbgh", "sbcran"))
  expect_equal(spec$spec$packages$sbgh$source$type, "git_hub")
  err <- expect_error(environment_spec(packages = "sblocal"), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "sblocal 1.0.0 \\(Local\\)")
})

test_that("an environment of another R version than the runtime's is refused before anything is built", {
  local_runtime_package()
  lock <- withr::local_tempfile(fileext = ".lock")
  other <- if (getRversion() >= "4.4.0") "4.3.3" else "4.4.1"
  writeLines(sprintf('{"R": {"Version": "%s", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli", "Version": "3.6.3", "Source": "Repository"}}}', other), lock)
  withr::local_options(starburst.renv_lock = lock)
  setup <- list(repository = "123456789012.dkr.ecr.us-east-1.amazonaws.com/x", region = "us-east-1")
  err <- expect_error(ensure_environment(setup), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), sprintf("pins R %s", other))
})

test_that("images are built by docker, else podman, else the set-up's CodeBuild project", {
  withr::local_envvar(STARBURST_DOCKER = "", STARBURST_PODMAN = "", STARBURST_BUILDER = "",
                      STARBURST_BUILD_NETWORK = "")
  withr::local_options(starburst.builder = NULL)
  setup <- list(bucket = "b-123-us-east-1", prefix = "starburst", build_project = "starburst-us-east-1-builder")
  ## PATH holds only the engines "found"
  bin <- withr::local_tempdir()
  withr::local_envvar(PATH = bin)
  found <- function(programs) {
    unlink(list.files(bin, full.names = TRUE))
    for (p in programs) {
      writeLines("#!/bin/sh", file.path(bin, p))
      Sys.chmod(file.path(bin, p), "755")
    }
  }
  found(character(0))
  choice <- builder_choice(setup)
  expect_equal(choice$engine, "codebuild")
  expect_equal(choice$cloud, list(project = "starburst-us-east-1-builder", bucket = "b-123-us-east-1",
                                  prefix = "starburst/builds"))
  found("podman")
  expect_equal(builder_choice(setup)$engine, "podman")
  expect_null(builder_choice(setup)$cloud)
  found(c("podman", "docker"))
  expect_equal(builder_choice(setup)$engine, "docker")
  ## No engine and no cloud builder: docker, whose absence is reported when a build is needed
  found(character(0))
  expect_equal(builder_choice(list(bucket = "b", prefix = "starburst"))$engine, "docker")
  withr::local_options(starburst.builder = "codebuild")
  expect_null(builder_choice(list(bucket = "b", prefix = "starburst"))$cloud)
  withr::local_options(starburst.builder = "buildah")
  expect_error(builder_choice(setup), class = "starburst_invalid_argument")
})

test_that("binaries come from the snapshot of when the versions were chosen", {
  lock <- withr::local_tempfile(fileext = ".lock")
  writeLines("{}", lock)
  Sys.setFileTime(lock, as.POSIXct("2025-03-14 12:00:00", tz = "UTC"))
  expect_equal(snapshot_date(lock = lock), "2025-03-14")
  Sys.setFileTime(lock, Sys.time())
  expect_equal(snapshot_date(lock = lock), "latest", info = "today's snapshot may not exist yet")
  ## Without a lockfile: the newest publication date of the session's packages
  dated <- vapply(c("jsonlite", "cli"), function(p) {
    substr(utils::packageDescription(p, fields = "Date/Publication"), 1L, 10L)
  }, "")
  skip_if(anyNA(dated), "these packages carry no Date/Publication here")
  expect_equal(snapshot_date(pkgs = c(jsonlite = "1", cli = "1")), max(dated))
  expect_equal(snapshot_date(pkgs = c(starburst = "0.1.0")), "latest", info = "nothing to date")
  ## The option wins, and the date is part of the environment's hash
  local_runtime_package()
  withr::local_options(starburst.renv_lock = lock)
  Sys.setFileTime(lock, as.POSIXct("2025-03-14 12:00:00", tz = "UTC"))
  writeLines('{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
              "Packages": {"cli": {"Package": "cli", "Version": "3.6.3", "Source": "Repository"}}}', lock)
  Sys.setFileTime(lock, as.POSIXct("2025-03-14 12:00:00", tz = "UTC"))
  dated_spec <- environment_spec()
  expect_equal(dated_spec$spec$snapshot, "2025-03-14")
  withr::local_options(starburst.snapshot = "2025-01-02")
  expect_false(identical(environment_spec()$tag, dated_spec$tag))
})
