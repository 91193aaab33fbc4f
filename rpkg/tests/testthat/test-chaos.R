## Chaos on the emulator: a session of 200 futures on backend = "aws" while
## worker processes are killed, workers are interrupted as Spot does, S3
## answers bursts of 503/500 and RunTask is throttled; then the client R
## process is killed with SIGKILL. Nothing finished may be lost or wrong, no
## worker may outlive the client by more than orphan_timeout + a minute, and
## the spend never passes the cap.

live_tasks <- function() {
  Filter(function(t) !identical(t$phase, "STOPPED"), emulator("tasks")$tasks)
}

test_that("chaos: killed workers, Spot interruptions, S3 and RunTask faults, then a killed client", {
  skip_unless_emulator()
  testthat::skip_if_not_installed("processx")
  ## A clean slate: no task of an earlier test still running
  t0 <- Sys.time()
  while (length(live_tasks()) > 0L && difftime(Sys.time(), t0, units = "secs") < 60) Sys.sleep(0.5)

  orphan_timeout <- 10
  faults_before <- sum(unlist(emulator("stats")$faults_injected))
  run_tasks_before <- emulator("stats")$requests$ecs$RunTask
  if (is.null(run_tasks_before)) run_tasks_before <- 0L
  max_cost <- 0.05
  out <- tempfile(fileext = ".txt")
  cost_file <- tempfile(fileext = ".txt")
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(future)",
    sprintf("plan(starburst::starburst, backend = 'aws', workers = 4, orphan_timeout = %g, max_cost = %g, max_retries = 5)",
            orphan_timeout, max_cost),
    "fs <- lapply(1:200, function(i) future({ Sys.sleep(0.1); i^2 }, seed = TRUE))",
    "done <- logical(200)",
    "repeat {",
    "  for (i in which(!done)) if (resolved(fs[[i]])) {",
    "    v <- tryCatch(value(fs[[i]]), error = function(e) paste('error:', conditionMessage(e)))",
    sprintf("    cat(i, format(v), '\\n', file = %s, append = TRUE)", deparse(out)),
    "    done[i] <- TRUE",
    "  }",
    sprintf("  cat(starburst::starburst_cost()$usd, '\\n', file = %s, append = TRUE)", deparse(cost_file)),
    "  if (all(done)) break",
    "  Sys.sleep(0.1)",
    "}",
    "Sys.sleep(3600)"
  ), script)
  client <- processx::process$new(file.path(R.home("bin"), "Rscript"), c("--vanilla", script),
                                  env = c("current", R_LIBS = paste(.libPaths(), collapse = ":")),
                                  stdout = "|", stderr = "2>&1")
  withr::defer(if (client$is_alive()) client$kill())
  results <- function() {
    if (!file.exists(out)) return(character(0))
    readLines(out, warn = FALSE)
  }
  wait_for <- function(n, timeout = 240) {
    t0 <- Sys.time()
    while (length(results()) < n) {
      if (!client$is_alive()) stop("the client died: ", client$read_all_output())
      if (difftime(Sys.time(), t0, units = "secs") > timeout) stop("no progress: ", length(results()), " results")
      Sys.sleep(0.2)
    }
  }

  faults <- 0L
  wait_for(20)
  ## Kill two worker processes outright (exit 137, no OOM reason): lost workers
  running <- Filter(function(t) identical(t$phase, "RUNNING") && !is.null(t$pid), live_tasks())
  for (t in head(running, 2L)) {
    tools::pskill(t$pid, tools::SIGKILL)
    faults <- faults + 1L
  }
  wait_for(50)
  ## A Spot interruption of another
  running <- Filter(function(t) identical(t$phase, "RUNNING"), live_tasks())
  if (length(running) > 0L) {
    ## (The task may have stopped in between: then there is nothing to interrupt.)
    hit <- tryCatch(emulator(paste0("interrupt/", running[[1]]$task_id), body = list()),
                    error = function(e) NULL)
    if (!is.null(hit)) faults <- faults + 1L
  }
  ## Bursts of S3 503 SlowDown and 500 InternalError, and RunTask throttling
  emulator("faults", list(service = "s3", status = 503, code = "SlowDown", count = 15))
  emulator("faults", list(service = "s3", status = 500, code = "InternalError", count = 10))
  emulator("faults", list(service = "ecs", operation = "RunTask", status = 400,
                               code = "ThrottlingException", message = "Rate exceeded", count = 3))
  withr::defer(emulator("faults", method = "DELETE"))
  faults <- faults + 28L
  wait_for(100)

  ## The client dies without a word
  client$kill()
  killed_at <- Sys.time()
  before <- results()

  ## Every worker stops by itself within orphan_timeout + a minute
  repeat {
    left <- live_tasks()
    waited <- as.numeric(difftime(Sys.time(), killed_at, units = "secs"))
    if (length(left) == 0L || waited > orphan_timeout + 60) break
    Sys.sleep(0.5)
  }
  expect_length(left, 0L)
  expect_lte(waited, orphan_timeout + 60)

  ## Nothing finished was lost, wrong or duplicated
  got <- strsplit(trimws(before), " +")
  ids <- as.integer(vapply(got, `[`, "", 1L))
  values <- vapply(got, `[`, "", 2L)
  expect_gte(length(ids), 100L)
  expect_false(anyDuplicated(ids) > 0L)
  expect_identical(as.numeric(values), as.numeric(ids)^2)
  ## The meter's spend never passed the cap
  spend <- as.numeric(readLines(cost_file, warn = FALSE))
  expect_true(all(spend <= max_cost + 1e-9))

  stats <- emulator("stats")
  launched <- stats$requests$ecs$RunTask - run_tasks_before
  message(sprintf("chaos: %d futures finished before the client was killed (all correct, none twice); %d faults injected (%d by the emulator); %s RunTask calls; the last worker stopped %.1f s after the client died (orphan_timeout %g s); spend at most $%.4f of $%g",
                  length(ids), faults, sum(unlist(stats$faults_injected)) - faults_before, launched, waited,
                  orphan_timeout, max(spend), max_cost))
})
