## starburst_timeline(): the session's futures, workers and spend, and its plot

test_that("starburst_timeline() tells where and when each future ran and what the workers cost", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  local_starburst(workers = 2L)
  y <- future.apply::future_sapply(1:6, function(i) { Sys.sleep(0.1); i^2 },
                                   future.chunk.size = 1L)
  expect_equal(y, (1:6)^2)

  live <- starburst_timeline()
  expect_s3_class(live, "starburst_timeline")
  expect_false(live$closed)
  expect_gte(nrow(live$futures), 6L)

  future::plan(future::sequential)
  tl <- starburst_timeline()
  expect_true(tl$closed)
  expect_equal(tl$backend, test_backend())
  f <- tl$futures
  w <- tl$workers
  ## The six futures of future_sapply() (future's own plan check may come first)
  mine <- f[grepl("^future_sapply", f$future), ]
  expect_equal(nrow(mine), 6L)
  expect_true(all(f$outcome == "done"))
  expect_true(all(f$retries == 0L))
  expect_true(all(f$worker %in% w$worker))
  expect_true(all(f$submitted <= f$started & f$started <= f$finished))
  ## Each ran for at least its Sys.sleep() on the worker's own clock
  expect_true(all(as.numeric(difftime(mine$finished, mine$started, units = "secs")) >= 0.09))
  expect_true(all(f$finished <= tl$origin + tl$duration + 1))

  expect_gte(nrow(w), 1L)
  expect_lte(nrow(w), 2L)
  expect_true(all(w$launched <= w$ready & w$ready <= w$stopped))
  expect_false(anyNA(w$stopped))
  expect_false(anyNA(w$cause))
  ## A worker is ready when R first evaluated a future there
  first <- tapply(as.numeric(f$started), f$worker, min)
  expect_equal(as.numeric(w$ready), as.numeric(first[w$worker]), tolerance = 1e-6)

  ## The spend agrees with starburst_cost(): per worker and over time
  cost <- starburst_cost()
  expect_equal(sum(w$cost_usd), cost$usd, tolerance = 1e-9)
  expect_equal(tl$cost$usd[nrow(tl$cost)], cost$usd, tolerance = 1e-9)
  expect_false(is.unsorted(tl$cost$usd))
  expect_false(is.unsorted(as.numeric(tl$cost$time)))

  expect_output(print(tl), sprintf("%d futures on %d workers", nrow(f), nrow(w)))
  png_file <- withr::local_tempfile(fileext = ".png")
  grDevices::png(png_file, width = 800, height = 500)
  expect_identical(plot(tl), tl)
  grDevices::dev.off()
  expect_gt(file.size(png_file), 5000)
})

test_that("the timeline marks a future whose R process died", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  local_starburst(workers = 1L)
  f <- future::future(quit(save = "no", status = 3L))
  err <- tryCatch(future::value(f), error = identity)
  expect_s3_class(err, "starburst_evaluator_died")
  ok <- future::value(future::future(42))
  tl <- starburst_timeline()
  expect_true("evaluator_died" %in% tl$futures$outcome)
  expect_true("done" %in% tl$futures$outcome)
  expect_output(print(tl), "1 evaluator_died")
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  expect_silent(plot(tl))
})

test_that("starburst_timeline() without a session, or with a bad one, says what to do", {
  expect_error(starburst_timeline(session = 42), class = "starburst_invalid_argument")
})
