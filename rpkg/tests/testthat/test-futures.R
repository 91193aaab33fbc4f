library(future)

test_that("a future is evaluated by another process and its value returned", {
  local_starburst(workers = 2)
  f <- future(Sys.getpid())
  expect_s3_class(f, "StarburstFuture")
  expect_s3_class(f, "MultiprocessFuture")
  pid <- value(f)
  expect_true(is.numeric(pid))
  expect_false(pid == Sys.getpid())
  expect_true(resolved(f))
})

test_that("nbrOfWorkers() and nbrOfFreeWorkers() report the plan", {
  local_starburst(workers = 2)
  expect_identical(nbrOfWorkers(), 2L)
  expect_identical(nbrOfFreeWorkers(), 2L)
  f <- future({ Sys.sleep(1); 1 })
  expect_lte(nbrOfFreeWorkers(), 1L)
  value(f)
  expect_identical(nbrOfFreeWorkers(), 2L)
  expect_identical(nbrOfWorkers(tweak(starburst, workers = 5, backend = "local")), 5L)
})

test_that("globals and packages are exported", {
  local_starburst(workers = 2)
  a <- 40
  g <- function(x) x + 2
  f <- future(g(a))
  expect_identical(value(f), 42)

  ## packages: a function from a package that is not attached here
  f <- future(tools::toTitleCase("hello world"), packages = "tools")
  expect_identical(value(f), "Hello World")

  ## explicit globals
  f <- future(x * 2, globals = list(x = 21))
  expect_identical(value(f), 42)
})

test_that("large globals travel as blobs", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000)
  big <- stats::rnorm(10000)
  small <- 3
  split <- starburst:::split_globals(list(big = big, small = small))
  expect_identical(split$blob_names, "big")
  expect_length(split$blobs, 1L)
  expect_type(split$blobs[[1]], "raw")
  expect_s3_class(split$globals$big, "starburst_blob_ref")
  expect_identical(split$globals$small, 3)

  fs <- lapply(1:4, function(i) future(sum(big) + i * small))
  expect_equal(unlist(value(fs)), sum(big) + (1:4) * 3)
})

test_that("seeds give reproducible L'Ecuyer-CMRG random numbers", {
  local_starburst(workers = 2)
  draw <- function() {
    fs <- lapply(1:3, function(i) future(rnorm(2), seed = TRUE))
    value(fs)
  }
  set.seed(42)
  a <- draw()
  set.seed(42)
  b <- draw()
  expect_identical(a, b)
  expect_false(identical(a[[1]], a[[2]]))

  ## The same as with plan(sequential)
  plan(sequential)
  set.seed(42)
  c <- draw()
  expect_identical(a, c)
})

test_that("stdout, messages, and warnings are relayed in order", {
  local_starburst(workers = 2)
  f <- future({
    cat("line 1\n")
    message("message 1")
    cat("line 2\n")
    warning("warning 1")
    message("message 2")
    42L
  })
  conditions <- list()
  out <- capture.output({
    v <- withCallingHandlers(value(f), condition = function(c) {
      conditions[[length(conditions) + 1L]] <<- c
      if (inherits(c, "message")) invokeRestart("muffleMessage")
      if (inherits(c, "warning")) invokeRestart("muffleWarning")
    })
  })
  expect_identical(v, 42L)
  expect_identical(out, c("line 1", "line 2"))
  classes <- vapply(conditions, function(c) class(c)[2], "")
  expect_identical(classes, c("message", "warning", "message"))
  expect_identical(vapply(conditions, conditionMessage, ""),
                   c("message 1\n", "warning 1", "message 2\n"))
})

test_that("errors keep their class", {
  local_starburst(workers = 2)
  f <- future({
    stop(structure(class = c("my_error", "error", "condition"),
                   list(message = "custom failure", call = NULL)))
  })
  err <- expect_error(value(f), class = "my_error")
  expect_identical(conditionMessage(err), "custom failure")
  expect_false(inherits(err, "FutureError"))

  ## The worker is fine afterwards
  expect_identical(value(future(1L)), 1L)
})

test_that("lazy futures start when asked for", {
  local_starburst(workers = 2)
  f <- future({ Sys.sleep(1); Sys.getpid() }, lazy = TRUE)
  expect_identical(f$state, "created")
  expect_false(resolved(f))     ## launches it, does not wait
  expect_identical(f$state, "running")
  expect_false(value(f) == Sys.getpid())

  g <- future(2 * 21, lazy = TRUE)
  expect_identical(value(g), 42)
})

test_that("resolved() does not block", {
  local_starburst(workers = 1)
  ## A future that cannot finish before resolved() returns: resolved() must answer FALSE
  ## instead of waiting for it.
  f <- future({ Sys.sleep(3); 1 })
  expect_false(resolved(f))
  expect_identical(value(f), 1)
})

test_that("more futures than workers are queued and all resolve", {
  local_starburst(workers = 2)
  fs <- lapply(1:6, function(i) future({ Sys.sleep(0.2); i }))
  expect_identical(unlist(value(fs)), 1:6)
})

test_that("%<-% works", {
  local_starburst(workers = 2)
  x %<-% { message("from %<-%"); 6 * 7 }
  expect_message(y <- x, "from %<-%")
  expect_identical(y, 42)
})

test_that("future.apply::future_lapply() works", {
  skip_if_not_installed("future.apply")
  local_starburst(workers = 2)
  pids <- future.apply::future_lapply(1:4, function(i) Sys.getpid())
  expect_false(any(unlist(pids) == Sys.getpid()))
  y <- future.apply::future_sapply(1:10, function(i) i^2)
  expect_identical(y, (1:10)^2)
  ## seeds
  a <- future.apply::future_lapply(1:3, function(i) runif(1), future.seed = 123)
  b <- future.apply::future_lapply(1:3, function(i) runif(1), future.seed = 123)
  expect_identical(a, b)
  ## errors
  expect_error(suppressWarnings(future.apply::future_lapply(1:3, function(i) if (i == 2) stop("two") else i)), "two")
  expect_identical(value(future(3L)), 3L)
})

test_that("furrr::future_map() works", {
  skip_if_not_installed("furrr")
  local_starburst(workers = 2)
  y <- furrr::future_map(1:4, function(i) i * 10)
  expect_identical(y, as.list((1:4) * 10))
  a <- furrr::future_map_dbl(1:3, ~ runif(1), .options = furrr::furrr_options(seed = 7L))
  b <- furrr::future_map_dbl(1:3, ~ runif(1), .options = furrr::furrr_options(seed = 7L))
  expect_identical(a, b)
})

test_that("nested futures run sequentially inside a worker by default", {
  local_starburst(workers = 2)
  f <- future({
    inner <- future::future(Sys.getpid())
    list(outer = Sys.getpid(), inner = future::value(inner),
         plan = inherits(future::plan("next"), "sequential"))
  })
  v <- value(f)
  expect_identical(v$outer, v$inner)
  expect_true(v$plan)
})

test_that("the global environment of a worker is cleared between futures", {
  local_starburst(workers = 1)
  f <- future({ assign("leftover", 1, envir = globalenv()); TRUE })
  expect_true(value(f))
  g <- future(exists("leftover", envir = globalenv()))
  expect_false(value(g))
})

test_that("an interrupt between receiving an outcome and recording it loses nothing", {
  local_starburst(workers = 1)
  f <- future(6 * 7)
  ## The first attempt to record the outcome is interrupted, as Ctrl-C or
  ## setTimeLimit() can do right after the engine handed the outcome over
  ns <- asNamespace("starburst")
  real <- get("record_outcome", envir = ns)
  calls <- 0L
  interrupted <- function(future, res) {
    calls <<- calls + 1L
    if (calls == 1L) {
      stop(structure(class = c("interrupt", "condition"), list(message = "", call = NULL)))
    }
    real(future, res)
  }
  unlockBinding("record_outcome", ns)
  assign("record_outcome", interrupted, envir = ns)
  on.exit({
    assign("record_outcome", real, envir = ns)
    lockBinding("record_outcome", ns)
  }, add = TRUE)
  expect_identical(tryCatch(value(f), interrupt = function(e) "interrupted"), "interrupted")
  expect_null(f[["result"]])
  ## Asked again, the engine still has it
  expect_identical(value(f), 42)
  expect_identical(calls, 2L)
})
