test_that("starburst is a future backend with every option a formal argument", {
  expect_s3_class(starburst, c("starburst", "multiprocess", "future", "function"), exact = TRUE)
  expect_identical(class(future_starburst), class(starburst))
  expect_true(all(c("workers", "cpu", "memory", "backend", "spot", "arch", "idle_timeout",
                    "max_retries", "expr", "envir", "substitute", "lazy", "seed", "globals",
                    "packages", "stdout", "conditions", "label", "...") %in% names(formals(starburst))))
  expect_identical(attr(starburst, "init"), TRUE)
  if (packageVersion("future") >= "1.40.0") {
    expect_true(is.function(attr(starburst, "factory")))
  } else {
    expect_null(attr(starburst, "factory"))
  }
})

test_that("unknown plan arguments are rejected with a classed error", {
  expect_error(future::plan(starburst, wrkers = 2, backend = "local"),
               class = "starburst_invalid_argument")
  expect_error(future::plan(starburst, wrkers = 2, backend = "local"), "wrkers")
  expect_error(future::tweak(starburst, foo = 1), class = "starburst_error")
  ## per-future arguments are not plan options
  expect_error(future::plan(starburst, seed = TRUE, backend = "local"),
               class = "starburst_invalid_argument")
  expect_true(inherits(future::plan("next"), "sequential"))
})

test_that("invalid workers are rejected", {
  for (workers in list(0L, -1, NA_integer_, TRUE, NA_character_, "2", 1.5, c(1, 2))) {
    expect_error(future::tweak(starburst, workers = workers, backend = "local"),
                 class = "starburst_invalid_argument")
  }
  expect_s3_class(future::tweak(starburst, workers = 3, backend = "local"), "starburst")
  expect_s3_class(future::tweak(starburst, workers = function() 2L, backend = "local"), "starburst")
})

test_that("other options are checked", {
  bad <- list(
    list(cpu = 0), list(cpu = "1"), list(cpu = NA_real_),
    list(memory = "2 parsecs"), list(memory = -1), list(memory = "GB"), list(memory = TRUE),
    list(backend = "gcp"), list(backend = NA_character_),
    list(spot = NA), list(spot = "yes"),
    list(arch = "sparc"),
    list(idle_timeout = 0), list(idle_timeout = Inf),
    list(max_retries = -1), list(max_retries = 0.5)
  )
  for (args in bad) {
    expect_error(do.call(future::tweak, c(list(starburst), args)),
                 class = "starburst_invalid_argument", info = deparse(args))
  }
})

test_that("memory accepts GB, MB, and numbers of GB", {
  parse_memory <- starburst:::parse_memory
  expect_identical(parse_memory("2GB"), 2048L)
  expect_identical(parse_memory("512MB"), 512L)
  expect_identical(parse_memory("0.5 GB"), 512L)
  expect_identical(parse_memory("1.5gb"), 1536L)
  expect_identical(parse_memory("4GiB"), 4096L)
  expect_identical(parse_memory(3), 3072L)
  expect_identical(parse_memory(0.25), 256L)
})

test_that("the aws backend needs a valid Fargate size and an AWS set-up", {
  withr::local_envvar(R_USER_CONFIG_DIR = withr::local_tempdir(), STARBURST_CONFIG = NA)
  ## Invalid size: the error names the valid combinations
  err <- expect_error(future::plan(starburst, backend = "aws", cpu = 1, memory = "1GB"),
                      class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "Fargate")
  expect_match(conditionMessage(err), "2", fixed = TRUE)

  ## Valid size, but no set-up: what to do
  err <- expect_error(future::plan(starburst, backend = "aws", cpu = 1, memory = "2GB"),
                      class = "starburst_backend_unavailable")
  expect_s3_class(err, "starburst_error")
  expect_match(conditionMessage(err), "starburst_setup()", fixed = TRUE)
  expect_match(conditionMessage(err), "backend = \"local\"", fixed = TRUE)
  expect_true(inherits(future::plan("next"), "sequential"))
})

test_that("with an AWS set-up, the default backend is aws and the set-up is read", {
  withr::local_envvar(STARBURST_CONFIG = NA)
  local_aws_setup()
  expect_true(starburst:::has_aws_setup())
  config <- starburst:::resolve_config()
  expect_identical(config$backend, "aws")
  expect_true(config$implicit)
  expect_identical(config$aws$bucket, "b")
  ## one subnet stays a JSON array
  json <- starburst:::session_config_json(config, root = tempdir())
  expect_match(json, '"subnets":["subnet-1"]', fixed = TRUE)
  expect_false(grepl("worker_bin", json, fixed = TRUE))
  ## explicit local still works
  config <- starburst:::resolve_config(backend = "local", workers = 1)
  expect_identical(config$backend, "local")
  expect_false(config$implicit)
  expect_null(config$aws)
})

test_that("a broken AWS set-up file gets a classed error that says what to do", {
  withr::local_envvar(STARBURST_CONFIG = NA)
  path <- local_aws_setup('{"region":"us-east-1","bucket":""}')
  err <- expect_error(starburst:::resolve_config(), class = "starburst_setup_invalid")
  expect_match(conditionMessage(err), "lacks bucket, cluster, subnets, image", fixed = TRUE)
  expect_match(conditionMessage(err), "starburst_setup()", fixed = TRUE)
  writeLines("{not json", path)
  expect_error(starburst:::resolve_config(), class = "starburst_setup_invalid")
  ## STARBURST_CONFIG points elsewhere
  other <- withr::local_tempfile(fileext = ".json")
  writeLines(valid_aws_setup, other)
  withr::local_envvar(STARBURST_CONFIG = other)
  expect_identical(starburst:::resolve_config()$aws$cluster, "starburst")
})

test_that("without an AWS set-up, plan(starburst) runs locally and says so once", {
  withr::local_envvar(R_USER_CONFIG_DIR = withr::local_tempdir(), STARBURST_CONFIG = NA)
  withr::local_options(starburst.quiet = NULL)
  expect_false(starburst:::has_aws_setup())

  config <- starburst:::resolve_config(workers = 2)
  expect_identical(config$backend, "local")
  expect_true(config$implicit)
  expect_identical(config$workers, 2L)

  oplan <- NULL
  msgs <- testthat::capture_messages(oplan <- future::plan(starburst, workers = 1))
  withr::defer(future::plan(oplan))
  expect_length(msgs, 1L)
  expect_match(msgs, "no AWS set-up found", fixed = TRUE)
  expect_match(msgs, "backend = \"local\"", fixed = TRUE)

  ## No further messages for futures under the same plan
  msgs <- testthat::capture_messages({
    f <- future::future(1 + 1)
    v <- future::value(f)
    n <- future::nbrOfWorkers()
  })
  expect_identical(v, 2)
  expect_identical(n, 1L)
  expect_length(msgs, 0L)
})

test_that("the default number of local workers is availableCores() or option starburst.workers", {
  withr::local_options(starburst.workers = NULL)
  config <- starburst:::resolve_config(backend = "local")
  expect_identical(config$workers, as.integer(parallelly::availableCores()))
  withr::local_options(starburst.workers = 3L)
  config <- starburst:::resolve_config(backend = "local")
  expect_identical(config$workers, 3L)
})

test_that("session configuration is the JSON object the engine expects", {
  config <- starburst:::resolve_config(backend = "local", workers = 2, cpu = 0.5, memory = "1GB")
  json <- starburst:::session_config_json(config, root = tempdir())
  x <- jsonlite::fromJSON(json, simplifyVector = FALSE)
  expect_identical(x$backend, "local")
  expect_identical(x$workers, 2L)
  expect_identical(x$millicpu, 500L)
  expect_identical(x$memory_mib, 1024L)
  expect_type(x$lib_paths, "list")
  expect_true(file.exists(x$rscript))
  expect_true(file.exists(x$worker_bin))
  expect_identical(x$idle_timeout_secs, 600L)
  expect_identical(x$max_retries, 2L)
  expect_type(x$env, "list")
  expect_match(json, "\"env\":{}", fixed = TRUE)
})

test_that("StarburstFutureError extends FutureError and carries the log tail", {
  e <- StarburstFutureError("the R process died", classes = "starburst_evaluator_died",
                            log_tail = c("line 1", "line 2"))
  expect_s3_class(e, "starburst_evaluator_died")
  expect_s3_class(e, "StarburstFutureError")
  expect_s3_class(e, "FutureError")
  expect_s3_class(e, "starburst_error")
  expect_s3_class(e, "error")
  expect_identical(e$log_tail, c("line 1", "line 2"))
  expect_match(conditionMessage(e), "line 2", fixed = TRUE)
})
