library(future)

## No worker outlives its client, every failure has a bound, and time settings
## cannot take the engine down, whatever the number.

test_that("time settings out of range are classed errors naming the range, never a panic", {
  for (args in list(
    list(idle_timeout = 1e10), list(idle_timeout = 1e20), list(idle_timeout = NaN),
    list(orphan_timeout = 1), list(orphan_timeout = 1e20), list(orphan_timeout = "300"),
    list(orphan_timeout = -5), list(orphan_timeout = Inf)
  )) {
    err <- expect_error(do.call(future::tweak, c(list(starburst), args)),
                        class = "starburst_invalid_argument", info = deparse(args))
    expect_match(conditionMessage(err), names(args), fixed = TRUE)
  }
  err <- expect_error(future::tweak(starburst, orphan_timeout = 1), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "from 5 to 3600", fixed = TRUE)
  expect_s3_class(future::tweak(starburst, orphan_timeout = 60, backend = "local"), "starburst")
})

test_that("options read while futures run are checked where they are read", {
  local_starburst(workers = 1L)
  f <- future(1)
  withr::local_options(starburst.collect_interval = 1e20)
  err <- expect_error(value(f), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "starburst.collect_interval", fixed = TRUE)
  withr::local_options(starburst.collect_interval = 0.2)
  expect_identical(value(f), 1)
  withr::local_options(starburst.failure_timeout = 1)
  expect_error(future(2), class = "starburst_invalid_argument")
})

test_that("estimates refuse start-up times and speeds that overflow", {
  expect_error(starburst_estimate(1:3, identity, startup = 1e300, quota = FALSE),
               class = "starburst_invalid_argument")
  expect_error(starburst_estimate(1:3, identity, speed = 1e300, quota = FALSE),
               class = "starburst_invalid_argument")
  expect_error(starburst_estimate(1:3, identity, startup = -1, quota = FALSE),
               class = "starburst_invalid_argument")
})

test_that("orphan_timeout is a preference", {
  withr::local_envvar(STARBURST_PREFERENCES = tempfile(fileext = ".json"))
  starburst_config(orphan_timeout = 120)
  expect_equal(starburst_config()$orphan_timeout, 120)
  expect_equal(starburst:::resolve_config(backend = "local")$orphan_timeout_secs, 120)
  err <- expect_error(starburst_config(orphan_timeout = 2), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "5 to 3600", fixed = TRUE)
})

test_that("changing a preference or option while futures run loses none of them", {
  skip_if(packageVersion("future") >= "1.40.0", "the backend's configuration is fixed at plan()")
  withr::local_envvar(STARBURST_PREFERENCES = tempfile(fileext = ".json"))
  local_starburst(workers = 2L)
  f <- future({ Sys.sleep(1); "first" })
  ## Each of these changes the configuration future() sees from now on
  starburst_config(idle_timeout = 120)
  g <- future("second")
  withr::local_options(starburst.failure_timeout = 200)
  h <- future({ Sys.sleep(0.5); "third" })
  expect_identical(value(h), "third")
  expect_identical(value(g), "second")
  expect_identical(value(f), "first")
  ## The replaced sessions closed once their futures were collected
  expect_length(Filter(function(s) !isTRUE(s[["closed"]]), starburst:::.state[["retired"]]), 0L)
})

test_that("a worker stops by itself when its R session is killed", {
  skip_unless_local()
  ## The worker's parent is gone (SIGKILL, no clean-up): it stops through its
  ## parent check and, as on AWS, through the stale session heartbeat.
  script <- tempfile(fileext = ".R")
  pidfile <- tempfile()
  writeLines(c(
    "library(future)",
    "plan(starburst::starburst, workers = 1, backend = 'local', orphan_timeout = 5)",
    "r_pid <- value(future(Sys.getpid()))",
    "ps <- system2('ps', c('-o', 'pid=,comm=', '--ppid', Sys.getpid()), stdout = TRUE)",
    "w_pids <- as.integer(sub('[[:space:]].*$', '', trimws(grep('starburst-work', ps, value = TRUE))))",
    "f <- future(Sys.sleep(120))",
    "Sys.sleep(1)",
    sprintf("writeLines(as.character(c(r_pid, w_pids)), %s)", deparse(pidfile)),
    "tools::pskill(Sys.getpid(), tools::SIGKILL)"
  ), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  system2(rscript, c("--vanilla", script), stdout = FALSE, stderr = FALSE,
          env = sprintf("R_LIBS=%s", paste(.libPaths(), collapse = ":")))
  pids <- as.integer(readLines(pidfile))
  expect_gte(length(pids), 2L)
  expect_true(wait_gone(pids, timeout = 30))
})
