## Bad inputs, counted: each row is something a user may get wrong, the
## classed error it must give, and text the message must contain. Nothing may
## be lost (no session is left half-open, no file changed) and no process left
## behind. The README's table lists the same rows.

library(future)

bad_inputs <- function() {
  setup_dir <- withr::local_tempdir(.local_envir = parent.frame())
  truncated <- file.path(setup_dir, "truncated.json")
  writeLines('{"region": "us-east-1", "bucket": "b", "clu', truncated)
  lacking <- file.path(setup_dir, "lacking.json")
  writeLines('{"region": "us-east-1", "cluster": "c"}', lacking)
  prefs_truncated <- file.path(setup_dir, "prefs-truncated.json")
  writeLines('{"workers": 4, "cpu":', prefs_truncated)
  prefs_edited <- file.path(setup_dir, "prefs-edited.json")
  writeLines('{"cpu": 3, "idle_timeout": -1}', prefs_edited)
  list(
    ## plan() arguments
    list("workers = 0", quote(future::tweak(starburst, workers = 0)), "starburst_invalid_argument", "workers"),
    list("workers = -1", quote(future::tweak(starburst, workers = -1)), "starburst_invalid_argument", "workers"),
    list("workers = NA", quote(future::tweak(starburst, workers = NA_integer_)), "starburst_invalid_argument", "workers"),
    list("workers = \"2\"", quote(future::tweak(starburst, workers = "2")), "starburst_invalid_argument", "workers"),
    list("workers = 1.5", quote(future::tweak(starburst, workers = 1.5)), "starburst_invalid_argument", "whole number"),
    list("workers = c(1, 2)", quote(future::tweak(starburst, workers = c(1, 2))), "starburst_invalid_argument", "workers"),
    list("cpu = 0", quote(future::tweak(starburst, cpu = 0)), "starburst_invalid_argument", "cpu"),
    list("cpu = \"1\"", quote(future::tweak(starburst, cpu = "1")), "starburst_invalid_argument", "cpu"),
    list("cpu = 3 on AWS", quote(starburst:::resolve_config(backend = "aws", cpu = 3, read_setup = FALSE)),
         "starburst_invalid_argument", "0.25, 0.5, 1, 2, 4, 8, 16"),
    list("memory = \"2 parsecs\"", quote(future::tweak(starburst, memory = "2 parsecs")), "starburst_invalid_argument", "memory"),
    list("memory = -1", quote(future::tweak(starburst, memory = -1)), "starburst_invalid_argument", "memory"),
    list("cpu = 1, memory = \"1GB\" on AWS",
         quote(starburst:::resolve_config(backend = "aws", cpu = 1, memory = "1GB", read_setup = FALSE)),
         "starburst_invalid_argument", "valid memory for 1 vCPU"),
    list("backend = \"gcp\"", quote(future::tweak(starburst, backend = "gcp")), "starburst_invalid_argument", "backend"),
    list("spot = \"yes\"", quote(future::tweak(starburst, spot = "yes")), "starburst_invalid_argument", "TRUE or FALSE"),
    list("arch = \"sparc\"", quote(future::tweak(starburst, arch = "sparc")), "starburst_invalid_argument", "x86_64"),
    list("idle_timeout = 0", quote(future::tweak(starburst, idle_timeout = 0)), "starburst_invalid_argument", "1 to 86400"),
    list("idle_timeout = 1e10", quote(future::tweak(starburst, idle_timeout = 1e10)), "starburst_invalid_argument", "1 to 86400"),
    list("idle_timeout = Inf", quote(future::tweak(starburst, idle_timeout = Inf)), "starburst_invalid_argument", "idle_timeout"),
    list("orphan_timeout = 1", quote(future::tweak(starburst, orphan_timeout = 1)), "starburst_invalid_argument", "5 to 3600"),
    list("orphan_timeout = 1e20", quote(future::tweak(starburst, orphan_timeout = 1e20)), "starburst_invalid_argument", "5 to 3600"),
    list("max_retries = -1", quote(future::tweak(starburst, max_retries = -1)), "starburst_invalid_argument", "max_retries"),
    list("max_retries = 0.5", quote(future::tweak(starburst, max_retries = 0.5)), "starburst_invalid_argument", "max_retries"),
    list("max_cost = 0", quote(future::tweak(starburst, max_cost = 0)), "starburst_invalid_argument", "max_cost"),
    list("max_cost = \"5\"", quote(future::tweak(starburst, max_cost = "5")), "starburst_invalid_argument", "max_cost"),
    list("max_hourly_cost = NaN", quote(future::tweak(starburst, max_hourly_cost = NaN)), "starburst_invalid_argument", "max_hourly_cost"),
    list("a misspelt option (wrkers)", quote(future::plan(starburst, wrkers = 2, backend = "local")),
         "starburst_invalid_argument", "wrkers"),
    list("a per-future argument (seed) given to plan()", quote(future::plan(starburst, seed = TRUE, backend = "local")),
         "starburst_invalid_argument", "per future"),
    ## options
    list("options(starburst.failure_timeout = 1)",
         quote(withr::with_options(list(starburst.failure_timeout = 1), starburst:::resolve_config(backend = "local"))),
         "starburst_invalid_argument", "starburst.failure_timeout"),
    list("options(starburst.failure_timeout = \"3m\")",
         quote(withr::with_options(list(starburst.failure_timeout = "3m"), starburst:::resolve_config(backend = "local"))),
         "starburst_invalid_argument", "number of seconds"),
    list("options(starburst.blob_threshold = -1)",
         quote(withr::with_options(list(starburst.blob_threshold = -1), starburst:::blob_threshold())),
         "starburst_invalid_argument", "blob_threshold"),
    list("options(starburst.worker_env = c(\"x\"))",
         quote(withr::with_options(list(starburst.worker_env = "x"),
                                   starburst:::session_config_json(starburst:::resolve_config(backend = "local"), tempdir()))),
         "starburst_invalid_argument", "named character vector"),
    ## environment variables and files edited by hand
    list("STARBURST_CONFIG names a truncated set-up file",
         bquote(withr::with_envvar(c(STARBURST_CONFIG = .(truncated)), starburst:::read_aws_setup())),
         "starburst_setup_invalid", "cannot be read"),
    list("STARBURST_CONFIG names a set-up file lacking fields",
         bquote(withr::with_envvar(c(STARBURST_CONFIG = .(lacking)), starburst:::read_aws_setup())),
         "starburst_setup_invalid", "lacks bucket, subnets"),
    list("STARBURST_CONFIG names a missing file, backend = \"aws\"",
         bquote(withr::with_envvar(c(STARBURST_CONFIG = .(file.path(setup_dir, "nope.json"))),
                                   starburst:::read_aws_setup())),
         "starburst_backend_unavailable", "starburst_setup()"),
    list("STARBURST_PREFERENCES names a truncated file",
         bquote(withr::with_envvar(c(STARBURST_PREFERENCES = .(prefs_truncated)), starburst_config())),
         "starburst_setup_invalid", "starburst_config(reset = TRUE)"),
    list("STARBURST_PREFERENCES names a file edited out of range",
         bquote(withr::with_envvar(c(STARBURST_PREFERENCES = .(prefs_edited)),
                                   starburst:::resolve_config(backend = "local"))),
         "starburst_setup_invalid", "preferences"),
    list("STARBURST_WORKER_BIN names a missing binary",
         quote(withr::with_envvar(c(STARBURST_WORKER_BIN = "/nonexistent/starburst-worker"),
                                  starburst:::worker_bin_path())),
         "starburst_worker_missing", "starburst-worker"),
    ## preferences
    list("starburst_config(cpu = 3)", quote(withr::with_envvar(c(STARBURST_PREFERENCES = tempfile()), starburst_config(cpu = 3))),
         "starburst_invalid_argument", "Nothing was changed"),
    list("starburst_config(orphan_timeout = 2)",
         quote(withr::with_envvar(c(STARBURST_PREFERENCES = tempfile()), starburst_config(orphan_timeout = 2))),
         "starburst_invalid_argument", "5 to 3600"),
    list("starburst_config(region = \"Mars\")",
         quote(withr::with_envvar(c(STARBURST_PREFERENCES = tempfile()), starburst_config(region = "Mars"))),
         "starburst_invalid_argument", "us-east-1"),
    ## other functions
    list("starburst_estimate(startup = 1e300)", quote(starburst_estimate(1:3, identity, startup = 1e300, quota = FALSE)),
         "starburst_invalid_argument", "startup"),
    list("starburst_estimate(speed = 1e300)", quote(starburst_estimate(1:3, identity, speed = 1e300, quota = FALSE)),
         "starburst_invalid_argument", "speed"),
    list("starburst_estimate() of nothing", quote(starburst_estimate(list(), identity, quota = FALSE)),
         "starburst_invalid_argument", "empty"),
    list("starburst_sessions(stop = \"yes\")", quote(starburst_sessions(stop = "yes")),
         "starburst_invalid_argument", "TRUE or FALSE"),
    list("starburst_status(aws = NA)", quote(starburst_status(aws = NA)),
         "starburst_invalid_argument", "TRUE or FALSE"),
    ## globals that cannot travel
    list("a connection as a global", quote(starburst:::check_travels(stdin(), "con")),
         "starburst_invalid_argument", "Open it inside the future"),
    list("an external pointer as a global", quote(starburst:::check_travels(methods::new("externalptr"), "ptr")),
         "starburst_invalid_argument", "Create it inside the future")
  )
}

test_that("every bad input gives its classed error, with what to do, and changes nothing", {
  cases <- bad_inputs()
  expect_gte(length(cases), 40L)
  before <- starburst:::current_session()
  for (case in cases) {
    err <- tryCatch(eval(case[[2]]), error = identity)
    expect_s3_class(err, case[[3]])
    expect_s3_class(err, "starburst_error")
    expect_match(conditionMessage(err), case[[4]], fixed = TRUE, info = case[[1]])
    ## The plan is still what it was, and no session opened or closed
    expect_identical(starburst:::current_session(), before, info = case[[1]])
  }
})

test_that("globals that cannot travel are refused when the future is created", {
  skip_if(packageVersion("future") >= "1.40.0", "future >= 1.40 wraps launch errors")
  local_starburst(workers = 1L)
  con <- file(tempfile(), open = "w")
  withr::defer(close(con))
  expect_error(future(isOpen(con)), class = "starburst_invalid_argument")
  ## The session goes on
  expect_identical(value(future(1 + 1)), 2)
})

test_that("non-ASCII labels and paths work", {
  local_starburst(workers = 1L)
  dir <- file.path(withr::local_tempdir(), "données-éè")
  dir.create(dir)
  f <- future({ writeLines("ü", file.path(dir, "fichier-ü.txt")); "ok" }, label = "étiquette-ü")
  expect_identical(value(f), "ok")
  expect_true(file.exists(file.path(dir, "fichier-ü.txt")))
})
