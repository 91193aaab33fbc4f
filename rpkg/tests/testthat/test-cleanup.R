library(future)

test_that("no worker process is left after plan(sequential)", {
  skip_unless_local()
  oplan <- plan(starburst, workers = 2, backend = "local")
  withr::defer(plan(oplan))
  fs <- lapply(1:2, function(i) future({ Sys.sleep(0.5); Sys.getpid() }))
  r_pids <- unlist(value(fs))
  w_pids <- worker_pids()
  expect_gte(length(w_pids), 1L)
  expect_true(all(vapply(r_pids, pid_alive, NA)))

  plan(sequential)
  expect_true(wait_gone(c(r_pids, w_pids)))
  expect_length(worker_pids(), 0L)
  expect_null(starburst:::current_session())
})

test_that("changing to another starburst plan replaces the workers", {
  skip_unless_local()
  oplan <- plan(starburst, workers = 1, backend = "local")
  withr::defer(plan(oplan))
  pid1 <- value(future(Sys.getpid()))
  w1 <- worker_pids()
  plan(starburst, workers = 2, backend = "local")
  pid2 <- value(future(Sys.getpid()))
  expect_true(wait_gone(c(pid1, w1)))
  expect_true(pid_alive(pid2))
  expect_identical(nbrOfWorkers(), 2L)
  plan(sequential)
  expect_true(wait_gone(pid2))
})

test_that("a future not collected before the plan changes fails clearly", {
  skip_unless_local()
  oplan <- plan(starburst, workers = 1, backend = "local")
  withr::defer(plan(oplan))
  f <- future({ Sys.sleep(30); 1 })
  plan(sequential)
  expect_error(value(f), class = "FutureError")
})

test_that("no worker process is left when R ends without plan(sequential)", {
  skip_unless_local()
  script <- tempfile(fileext = ".R")
  pidfile <- tempfile()
  writeLines(c(
    "library(future)",
    "plan(starburst::starburst, workers = 2, backend = 'local')",
    "fs <- lapply(1:2, function(i) future({ Sys.sleep(0.3); Sys.getpid() }))",
    "r_pids <- unlist(value(fs))",
    "ps <- system2('ps', c('-o', 'pid=,comm=', '--ppid', Sys.getpid()), stdout = TRUE)",
    "w_pids <- as.integer(sub('[[:space:]].*$', '', trimws(grep('starburst-work', ps, value = TRUE))))",
    sprintf("writeLines(as.character(c(r_pids, w_pids)), %s)", deparse(pidfile)),
    "f <- future(Sys.sleep(60))   ## still running when R ends"
  ), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  status <- system2(rscript, c("--vanilla", script), stdout = FALSE, stderr = FALSE,
                    env = sprintf("R_LIBS=%s", paste(.libPaths(), collapse = ":")))
  expect_identical(status, 0L)
  pids <- as.integer(readLines(pidfile))
  expect_gte(length(pids), 3L)   ## two R evaluators and at least one worker
  expect_true(wait_gone(pids))
})
