library(future)

test_that("starburst_logs() shows the log of the worker that ran a future", {
  local_starburst(workers = 1)
  f <- future({ cat("hello from the worker log\n", file = stderr()); 42 })
  expect_error(starburst_logs(f), class = "starburst_no_worker")
  expect_identical(value(f), 42)
  ## the line reaches the log (on AWS through CloudWatch Logs, which may lag)
  logs <- NULL
  for (i in 1:50) {
    logs <- starburst_logs(f, n = Inf)
    if (any(grepl("hello from the worker log", logs$message, fixed = TRUE))) break
    Sys.sleep(0.2)
  }
  expect_s3_class(logs, "starburst_logs")
  expect_true(any(grepl("hello from the worker log", logs$message, fixed = TRUE)))
  expect_length(unique(logs$worker), 1L)
  expect_output(print(logs), "== worker", fixed = TRUE)

  ## the session's workers, and the last n lines
  all <- starburst_logs()
  expect_true(unique(logs$worker) %in% all$worker)
  expect_lte(nrow(starburst_logs(worker = logs$worker[1], n = 2)), 2L)
  expect_error(starburst_logs(n = 0), class = "starburst_invalid_argument")
})

test_that("starburst_logs() without a session says what to do", {
  withr::local_options(starburst.quiet = TRUE)
  future::plan(sequential)
  expect_error(starburst_logs(), class = "starburst_session_closed")
})
