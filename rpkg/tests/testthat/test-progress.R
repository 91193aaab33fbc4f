library(future)

test_that("immediate conditions arrive while the future is still running", {
  local_starburst(workers = 1)
  f <- future({
    signalCondition(structure(class = c("tick", "immediateCondition", "condition"),
                              list(message = "tick 1", call = NULL)))
    Sys.sleep(2)
    "done"
  })
  received <- list()
  resolved_when_received <- NA
  t0 <- Sys.time()
  withCallingHandlers({
    while (length(received) == 0L && difftime(Sys.time(), t0, units = "secs") < 30) {
      r <- resolved(f)
      if (length(received) > 0L) resolved_when_received <- r
      if (r) break
      Sys.sleep(0.05)
    }
  }, tick = function(c) received[[length(received) + 1L]] <<- c)
  expect_length(received, 1L)
  expect_identical(conditionMessage(received[[1]]), "tick 1")
  expect_false(resolved_when_received)

  ## value() does not signal it a second time
  again <- 0L
  v <- withCallingHandlers(value(f), tick = function(c) again <<- again + 1L)
  expect_identical(v, "done")
  expect_identical(again, 0L)
})

test_that("progressr updates are relayed", {
  skip_if_not_installed("progressr")
  skip_if_not_installed("future.apply")
  local_starburst(workers = 2)
  n <- 0L
  progressr::with_progress({
    p <- progressr::progressor(steps = 4L)
    withCallingHandlers({
      y <- future.apply::future_lapply(1:4, function(i) {
        p(sprintf("item %d", i))
        i
      })
    }, progression = function(c) {
      if (identical(c$type, "update")) n <<- n + 1L
    })
  }, handlers = progressr::handler_void(), enable = TRUE)
  expect_identical(unlist(y), 1:4)
  expect_identical(n, 4L)
})
