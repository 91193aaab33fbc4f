## Real images: starburst's runtime and an environment built with podman (from a
## local Debian base with Debian's R, and a local binary repository standing in
## for Posit Package Manager), run as containers by the emulator's Fargate
## simulator (`--containers`), in both environment modes. Run by `cargo xtask
## test` (xtask/src/images.rs sets it up); skipped elsewhere.

skip_unless_containers <- function() {
  skip_if_not(identical(Sys.getenv("STARBURST_TEST_CONTAINERS"), "true"),
              "needs podman and the emulator with --containers (cargo xtask test sets them up)")
  skip_unless_emulator()
}

## Builds on the local base and repository: the options a user in production
## would leave at their defaults (rocker/r-ver, Posit Package Manager)
local_container_setup <- function(name, cloud_builder = FALSE, .env = parent.frame()) {
  pm <- Sys.getenv("STARBURST_TEST_PACKAGE_MANAGER")
  local_setup_file(.env = .env)
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json", .local_envir = .env),
                      R_USER_CACHE_DIR = withr::local_tempdir(.local_envir = .env), .local_envir = .env)
  withr::local_options(starburst.runtime_base = Sys.getenv("STARBURST_TEST_RUNTIME_BASE"),
                       starburst.runtime_distribution = "debian/12/bookworm",
                       starburst.package_managers = pm,
                       starburst.runtime_repository = paste0(pm, "/cran/__linux__/bookworm/latest"),
                       starburst.builder = "podman", .local_envir = .env)
  suppressMessages(starburst_setup(region = "us-east-1", name = name, confirm = FALSE,
                                   cloud_builder = cloud_builder))
  withr::defer({
    ## Containers take a moment to stop; their network interfaces hold the
    ## security group until then (teardown would wait too, retrying)
    for (i in 1:120) {
      phases <- vapply(emulator("tasks")$tasks, function(t) t$phase, "")
      if (all(phases == "STOPPED")) break
      Sys.sleep(0.5)
    }
    suppressMessages(starburst_teardown(confirm = FALSE))
  }, envir = .env)
  pm
}

## A lockfile of the Debian versions of `packages` (or `versions`), from the
## package manager
local_lock <- function(packages, pm, versions = NULL, .env = parent.frame()) {
  lock <- withr::local_tempfile(fileext = ".lock", .local_envir = .env)
  pkgs <- lapply(packages, function(p) list(Package = p,
                                            Version = versions[[p]] %||% utils::packageDescription(p)$Version,
                                            Source = "Repository", Repository = "CRAN"))
  names(pkgs) <- packages
  writeLines(jsonlite::toJSON(list(R = list(Version = as.character(getRversion()),
                                            Repositories = list(list(Name = "CRAN", URL = paste0(pm, "/cran/latest")))),
                                   Packages = pkgs), auto_unbox = TRUE), lock)
  withr::local_options(starburst.renv_lock = lock, .local_envir = .env)
  lock
}

## What a future sees inside its container
probe <- function(i) {
  list(i = i,
       runtime = Sys.getenv("STARBURST_RUNTIME"),
       lib1 = .libPaths()[1],
       dt = nrow(data.table::data.table(x = seq_len(i))),
       xml = xml2::xml_text(xml2::read_xml(sprintf("<a>%d</a>", i))),
       host_home = file.exists("/work"))
}

test_that("image mode: the runtime and the environment image are built with podman and futures run in them", {
  skip_unless_containers()
  pm <- local_container_setup("sbimg")
  local_lock(c("data.table", "xml2"), pm)
  withr::local_options(starburst.environment = "image")
  msgs <- utils::capture.output(type = "message", {
    future::plan(starburst, backend = "aws", workers = 2L)
    res <- future.apply::future_lapply(1:4, probe)
  })
  future::plan(future::sequential)
  expect_equal(vapply(res, `[[`, 0L, "dt"), 1:4)
  expect_equal(vapply(res, `[[`, "", "xml"), as.character(1:4))
  expect_true(all(grepl("^runtime-", vapply(res, `[[`, "", "runtime"))), info = "ran in the runtime image")
  expect_equal(unique(vapply(res, `[[`, "", "lib1")), "/opt/starburst/library")
  expect_false(any(vapply(res, `[[`, NA, "host_home")), info = "not on the host's file system")
  expect_true(any(grepl("building image .*:runtime-", msgs)), info = paste(msgs, collapse = "\n"))
  expect_true(any(grepl("building image .*:env-r", msgs)), info = paste(msgs, collapse = "\n"))
  expect_true(any(grepl("system requirements: libxml2", msgs)), info = "xml2's library came from its system requirements")
})

test_that("without Docker or podman: the set-up's CodeBuild project builds the images, its log shown here", {
  skip_unless_containers()
  pm <- local_container_setup("sbcb", cloud_builder = TRUE)
  expect_equal(read_aws_setup()$build_project, "sbcb-us-east-1-builder")
  local_lock(c("data.table", "xml2"), pm)
  ## As on a machine without a container engine (test-environment.R checks that
  ## the cloud builder is then the default)
  withr::local_options(starburst.environment = "image", starburst.builder = "codebuild")
  msgs <- utils::capture.output(type = "message", {
    future::plan(starburst, backend = "aws", workers = 2L)
    res <- future.apply::future_lapply(1:2, probe)
  })
  future::plan(future::sequential)
  expect_equal(vapply(res, `[[`, 0L, "dt"), 1:2)
  expect_equal(vapply(res, `[[`, "", "xml"), as.character(1:2))
  text <- paste(msgs, collapse = "\n")
  expect_match(text, "uploading the build context")
  expect_match(text, "CodeBuild build sbcb-us-east-1-builder:[-0-9a-f]+ started")
  expect_match(text, "Running command docker build")
  expect_match(text, "CodeBuild build .* succeeded")
  expect_true(any(grepl("building image .*:runtime-", msgs)), info = text)
  expect_true(any(grepl("building image .*:env-r", msgs)), info = text)
})

test_that("sync mode: workers on the runtime restore the environment once, later ones download it", {
  skip_unless_containers()
  pm <- local_container_setup("sbsync")
  local_lock(c("data.table", "xml2"), pm)
  withr::local_options(starburst.environment = "sync")
  msgs <- utils::capture.output(type = "message", {
    future::plan(starburst, backend = "aws", workers = 2L)
    res <- future.apply::future_lapply(1:4, probe)
  })
  logs <- starburst_logs()
  future::plan(future::sequential)
  expect_equal(vapply(res, `[[`, 0L, "dt"), 1:4)
  expect_equal(unique(vapply(res, `[[`, "", "lib1")), "/opt/starburst/library")
  expect_false(any(grepl("building image .*:env-r", msgs)), info = "no environment image in sync mode")
  text <- paste(logs$message, collapse = "\n")
  expect_match(text, "environment ready.*Built")
  ## a new session's workers download the archive
  future::plan(starburst, backend = "aws", workers = 1L)
  expect_equal(future::value(future::future(nrow(data.table::data.table(x = 1:3)))), 3L)
  logs <- starburst_logs()
  future::plan(future::sequential)
  expect_match(paste(logs$message, collapse = "\n"), "environment ready.*Downloaded")
})

test_that("sync mode: an environment that cannot be restored fails at once, with the reason from the worker's log", {
  skip_unless_containers()
  pm <- local_container_setup("sbfail")
  local_lock("R6", pm, versions = list(R6 = "99.0.0"))   # a version the repository does not have
  withr::local_options(starburst.environment = "sync")
  on.exit(future::plan(future::sequential), add = TRUE)
  ## plan() runs a first future: that is where it fails
  err <- expect_error(future::plan(starburst, backend = "aws", workers = 1L),
                      class = "starburst_worker_start_failed")
  expect_match(conditionMessage(err), "could not install the environment's packages")
  expect_match(conditionMessage(err), "R6 99.0.0 \\(got")
})
