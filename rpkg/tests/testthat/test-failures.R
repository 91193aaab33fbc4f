library(future)

test_that("a future whose R process calls quit() fails with a classed error; the next one works", {
  local_starburst(workers = 1)
  f <- future(quit(save = "no", status = 3L))
  err <- expect_error(value(f), class = "StarburstFutureError")
  expect_s3_class(err, "FutureError")
  expect_s3_class(err, "starburst_error")
  expect_s3_class(err, "starburst_evaluator_died")
  expect_match(conditionMessage(err), "exited with status 3")
  expect_true(resolved(f))
  ## value() keeps giving the same error
  expect_error(value(f), class = "StarburstFutureError")

  g <- future(21 * 2)
  expect_identical(value(g), 42)
})

test_that("a future whose R process is killed fails with a classed error; the next one works", {
  local_starburst(workers = 1)
  f <- future({ cat("about to die\n", file = stderr()); tools::pskill(Sys.getpid(), tools::SIGKILL); Sys.sleep(10) })
  err <- expect_error(value(f), class = "StarburstFutureError")
  expect_s3_class(err, "starburst_evaluator_died")
  expect_match(conditionMessage(err), "killed \\(signal 9")
  expect_true(any(grepl("about to die", err$log_tail)))

  g <- future(Sys.getpid())
  expect_false(value(g) == Sys.getpid())
})

test_that("a future whose R process crashes (segmentation fault) fails with a classed error", {
  local_starburst(workers = 1)
  f <- future({ tools::pskill(Sys.getpid(), 11L); Sys.sleep(10) })
  err <- expect_error(value(f), class = "StarburstFutureError")
  expect_s3_class(err, "starburst_evaluator_died")
  expect_match(conditionMessage(err), "segmentation fault (signal 11)", fixed = TRUE)
  ## R's own crash report reaches the user through the worker log tail
  expect_true(any(grepl("R is aborting now", err$log_tail, fixed = TRUE)))
  expect_identical(value(future(6 * 7)), 42)
})

test_that("a failing future does not take down the others", {
  local_starburst(workers = 2)
  fs <- list(
    future({ Sys.sleep(0.5); "a" }),
    future(quit(save = "no")),
    future({ Sys.sleep(0.5); "c" })
  )
  expect_identical(value(fs[[1]]), "a")
  expect_error(value(fs[[2]]), class = "StarburstFutureError")
  expect_identical(value(fs[[3]]), "c")
})

test_that("cancel() interrupts a running future", {
  skip_if_not(has_cancel(), "future::cancel() needs future (>= 1.40.0)")
  local_starburst(workers = 1)
  f <- future({ Sys.sleep(30); 1 })
  Sys.sleep(0.5)
  f <- cancel(f)
  expect_true(resolved(f))
  expect_error(value(f), class = "FutureInterruptError")
  ## the worker is free again, quickly
  g <- future(2)
  expect_identical(value(g), 2)
})

test_that("cancelling a queued future drops it", {
  skip_if_not(has_cancel(), "future::cancel() needs future (>= 1.40.0)")
  local_starburst(workers = 1)
  f1 <- future({ Sys.sleep(1); 1 })
  f2 <- future({ Sys.sleep(30); 2 })
  f2 <- cancel(f2)
  expect_error(value(f2), class = "FutureInterruptError")
  expect_identical(value(f1), 1)
  expect_identical(value(future(3)), 3)
})

test_that("future.apply stops the other futures when one fails", {
  skip_if_not_installed("future.apply")
  local_starburst(workers = 2)
  t0 <- Sys.time()
  ## future.apply (>= 1.20) warns that it cancels the other futures
  expect_error(suppressWarnings(future.apply::future_lapply(1:2, function(i) {
    if (i == 1) stop("first fails") else { Sys.sleep(20); i }
  }, future.chunk.size = 1)), "first fails")
  expect_identical(value(future(1)), 1)
})

test_that("a future that floods stderr before it dies gives a bounded log tail; the next one works", {
  local_starburst(workers = 1)
  f <- future({
    ## megabytes in one line, bytes that are not UTF-8, then death
    cat(strrep("x", 5e6), "\n", file = stderr())
    cat(rawToChar(as.raw(c(0xc3, 0x28))), "\n", file = stderr())
    for (i in 1:2000) cat("line", i, strrep("y", 1000), "\n", file = stderr())
    cat("last words\n", file = stderr())
    tools::pskill(Sys.getpid(), tools::SIGKILL)
    Sys.sleep(10)
  })
  err <- expect_error(value(f), class = "starburst_evaluator_died")
  expect_lte(length(err$log_tail), 40L)
  expect_lte(sum(nchar(err$log_tail, type = "bytes")), 40L * 4200L)
  expect_true(any(grepl("last words", err$log_tail)))
  expect_identical(value(future(6 * 7)), 42)
})

test_that("every failure cause the engine reports has a documented condition class", {
  causes <- starburst:::sb_failure_causes()
  expect_gt(length(causes), 10L)
  expect_setequal(names(starburst:::failure_classes), causes)
  expect_true(all(startsWith(starburst:::failure_classes, "starburst_")))
  ## ... each documented in ?StarburstFutureError
  rd <- tools::Rd_db("starburst")[["StarburstFutureError.Rd"]]
  text <- paste(as.character(rd), collapse = "")
  for (cls in starburst:::failure_classes) expect_match(text, cls, fixed = TRUE, info = cls)
  ## A cause the table does not know (never sent by this engine) is still an error class
  expect_identical(starburst:::failure_class("no_such_cause"), "starburst_engine_error")
})
