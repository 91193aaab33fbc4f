## starburst_cost() and the hard budget caps

test_that("starburst_cost() reports the session's workers and what they cost on Fargate", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  local_starburst(workers = 2L)
  y <- future.apply::future_sapply(1:6, function(i) i^2)
  expect_equal(y, (1:6)^2)
  cost <- starburst_cost()
  expect_s3_class(cost, "starburst_cost")
  expect_equal(cost$backend, test_backend())
  expect_gte(cost$workers, 1)
  expect_lte(cost$workers, 2)
  ## one minute minimum per worker, 1 vCPU / 2 GB
  expect_gte(cost$vcpu_seconds, 60 * cost$workers)
  expect_equal(cost$gb_seconds, 2 * cost$vcpu_seconds)
  expect_gt(cost$usd, 0)
  expect_equal(cost$usd, cost$usd_on_demand)
  expect_false(cost$exceeded)
  expect_output(print(cost), if (test_backend() == "local") "would cost +\\$" else "cost +\\$")

  ## After the plan changes, the final bill of the closed session
  future::plan(future::sequential)
  final <- starburst_cost()
  expect_true(final$closed)
  expect_equal(final$running, 0)
  expect_gte(final$usd, cost$usd)
})

test_that("a session whose cap is below one worker-minute launches nothing and fails its futures", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  ## plan() may already fail here: future validates a new plan with a test future
  err <- tryCatch({
    local_starburst(workers = 2L, max_cost = 1e-4)
    future::value(future::future(42))
  }, error = identity)
  expect_s3_class(err, "starburst_budget_exceeded")
  expect_match(conditionMessage(err), "max_cost is \\$0.0001")
  cost <- starburst_cost()
  expect_equal(cost$workers, 0)
  expect_true(cost$exceeded)
  expect_equal(cost$max_cost, 1e-4)
})

test_that("the caps come from starburst_config() and are checked", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  starburst_config(max_cost = 3, max_hourly_cost = 1.5)
  cfg <- resolve_config(backend = "local")
  expect_equal(cfg$max_cost, 3)
  expect_equal(cfg$max_hourly_cost, 1.5)
  expect_equal(resolve_config(backend = "local", max_cost = 10)$max_cost, 10)
  expect_error(future::plan(starburst, backend = "local", max_cost = -1),
               "positive number of US dollars", class = "starburst_invalid_argument")
  expect_error(future::plan(starburst, backend = "local", max_hourly_cost = "a lot"),
               class = "starburst_invalid_argument")
})
