## starburst_config(): persisted, validated preferences, used as plan() defaults

local_preferences <- function(.env = parent.frame()) {
  path <- withr::local_tempfile(fileext = ".json", .local_envir = .env)
  withr::local_envvar(STARBURST_PREFERENCES = path, .local_envir = .env)
  path
}

test_that("without preferences, every value is the built-in default", {
  path <- local_preferences()
  cfg <- starburst_config()
  expect_s3_class(cfg, "starburst_config")
  expect_equal(cfg$cpu, 1)
  expect_equal(cfg$memory, "2GB")
  expect_false(cfg$spot)
  expect_null(cfg$max_cost)
  expect_length(attr(cfg, "stored"), 0L)
  expect_false(file.exists(path))
  expect_output(print(cfg), "cpu +1  \\(default\\)")
})

test_that("preferences are validated, persisted, and can be forgotten", {
  path <- local_preferences()
  starburst_config(workers = 20, cpu = 2, memory = "4GB", spot = TRUE, arch = "arm64",
                   region = "eu-west-1", max_cost = 5, max_hourly_cost = 2.5,
                   idle_timeout = 120, data_retention_days = 3)
  expect_true(file.exists(path))
  cfg <- starburst_config()
  expect_equal(cfg$workers, 20L)
  expect_equal(cfg$memory, "4GB")
  expect_true(cfg$spot)
  expect_equal(cfg$region, "eu-west-1")
  expect_equal(cfg$max_cost, 5)
  expect_setequal(attr(cfg, "stored"), c("workers", "cpu", "memory", "spot", "arch", "region",
                                         "max_cost", "max_hourly_cost", "idle_timeout",
                                         "data_retention_days"))
  starburst_config(max_cost = NULL)
  expect_null(starburst_config()$max_cost)
  expect_equal(starburst_config()$max_hourly_cost, 2.5)
  starburst_config(reset = TRUE)
  expect_false(file.exists(path))
})

test_that("an invalid value is a classed error naming the valid range, and changes nothing", {
  local_preferences()
  starburst_config(cpu = 2, memory = "8GB")
  before <- starburst_config()
  cases <- list(
    list(args = list(cpu = 3), pattern = "0.25, 0.5, 1, 2, 4, 8, 16"),
    list(args = list(workers = 0), pattern = "1 to 10000"),
    list(args = list(memory = "lots"), pattern = "memory"),
    list(args = list(spot = "yes"), pattern = "TRUE or FALSE"),
    list(args = list(arch = "sparc"), pattern = "x86_64"),
    list(args = list(region = "Mars"), pattern = "us-east-1"),
    list(args = list(max_cost = -1), pattern = "positive number of US dollars"),
    list(args = list(max_hourly_cost = "1"), pattern = "per hour"),
    list(args = list(idle_timeout = 0), pattern = "1 to 86400"),
    list(args = list(data_retention_days = 1.5), pattern = "1 to 3650"),
    ## each valid on its own, not together: Fargate has no 0.25 vCPU / 8 GB worker
    list(args = list(cpu = 0.25), pattern = "Fargate size")
  )
  for (case in cases) {
    err <- expect_error(do.call(starburst_config, case$args), class = "starburst_invalid_argument")
    expect_match(conditionMessage(err), case$pattern, fixed = TRUE)
    expect_identical(starburst_config(), before)
  }
})

test_that("plan() takes its defaults from the preferences", {
  local_preferences()
  starburst_config(cpu = 0.5, memory = "1GB", idle_timeout = 30, workers = 3)
  cfg <- resolve_config(backend = "local")
  expect_equal(cfg$millicpu, 500L)
  expect_equal(cfg$memory_mib, 1024L)
  expect_equal(cfg$idle_timeout_secs, 30L)
  expect_equal(cfg$workers, 3L)
  ## explicit arguments and the starburst.workers option still win
  cfg <- resolve_config(backend = "local", cpu = 2, workers = 1)
  expect_equal(cfg$millicpu, 2000L)
  expect_equal(cfg$workers, 1L)
  withr::local_options(starburst.workers = 5L)
  expect_equal(resolve_config(backend = "local")$workers, 5L)
})

test_that("a damaged preferences file is a classed error that says how to fix it", {
  path <- local_preferences()
  writeLines("{not json", path)
  err <- expect_error(starburst_config(), class = "starburst_setup_invalid")
  expect_match(conditionMessage(err), "reset = TRUE", fixed = TRUE)
  writeLines('{"cpu": 3}', path)
  err <- expect_error(resolve_config(backend = "local"), class = "starburst_setup_invalid")
  expect_match(conditionMessage(err), "starburst_config(cpu = ...)", fixed = TRUE)
  starburst_config(reset = TRUE)
  expect_equal(starburst_config()$cpu, 1)
})
