## Quotas, estimates and status

test_that("an estimate projects waves, wall time and cost as computed by hand", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  est <- starburst_estimate(1:50, function(i) i, workers = 10, cpu = 1, memory = "2GB",
                            region = "us-east-1", startup = 0, quota = FALSE)
  expect_s3_class(est, "starburst_estimate")
  expect_equal(est$tasks, 50)
  expect_equal(est$workers, 10)
  expect_equal(est$waves, 5)
  ## every worker is billed its one-minute minimum: 10 x 60 s x (1 vCPU x $0.04048 + 2 GB x $0.004445) / 3600
  expect_equal(est$cost_on_demand, 10 * 60 * (0.04048 + 2 * 0.004445) / 3600, tolerance = 1e-9)
  expect_lt(est$cost_spot, est$cost_on_demand)
  expect_output(print(est), "5\\b")
  expect_error(starburst_estimate(list(), identity, quota = FALSE), class = "starburst_invalid_argument")
  expect_error(starburst_estimate(1:3, identity, cpu = 3, quota = FALSE), class = "starburst_invalid_argument")
})

test_that("starburst_status() reports without AWS", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"),
                      STARBURST_CONFIG = tempfile())
  st <- starburst_status(aws = FALSE)
  expect_s3_class(st, "starburst_status")
  expect_null(st$setup)
  expect_output(print(st), "AWS set-up +none")
})

test_that("starburst_status() shows the active session, its workers by phase and its spend", {
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  local_starburst(workers = 1L)
  expect_equal(future::value(future::future(1 + 1)), 2)
  st <- starburst_status(aws = FALSE)
  expect_equal(st$session$backend, test_backend())
  expect_equal(st$session$ready, 1L)
  expect_gt(st$cost$usd, 0)
  expect_output(print(st), "0 provisioning, 0 pulling image, 0 starting R, 1 ready")
})

test_that("quota status, increase requests and their history on the emulator", {
  testthat::skip_if_not(test_backend() == "aws", "needs the AWS emulator")
  withr::local_envvar(STARBURST_QUOTA_HISTORY = withr::local_tempfile(fileext = ".json"))
  q <- expect_no_warning(starburst_quota_status())
  expect_s3_class(q, "starburst_quota_status")
  expect_setequal(q$code, c("L-3032A538", "L-36FBB829"))
  expect_true(all(q$default == 6))
  expect_true(all(q$headroom <= 6 & q$headroom >= 0))
  expect_output(print(q), "Fargate On-Demand vCPU")

  expect_message(req <- starburst_request_quota_increase(40), "is pending")
  expect_equal(req$desired, 40)
  expect_equal(req$state, "pending")
  ## an open request asking for at least as much is not filed again
  again <- suppressMessages(starburst_request_quota_increase(20))
  expect_equal(again$id, req$id)
  known <- starburst_check_quota_request()
  expect_equal(nrow(known), 1L)
  expect_equal(known$state, "pending")
  expect_equal(nrow(starburst_check_quota_request(req$id)), 1L)
  expect_error(starburst_check_quota_request("nope"), class = "starburst_invalid_argument")
  expect_error(starburst_request_quota_increase(-1), class = "starburst_invalid_argument")
})

test_that("on AWS, workers beyond the vCPU quota run as later waves", {
  testthat::skip_if_not(test_backend() == "aws", "needs the AWS emulator")
  withr::local_envvar(STARBURST_PREFERENCES = withr::local_tempfile(fileext = ".json"))
  ## 4 workers of 2 vCPU do not fit in the emulator's quota of 6 vCPU: 3 do
  msgs <- testthat::capture_messages({
    local_starburst(workers = 4L, cpu = 2, memory = "4GB")
    y <- future.apply::future_sapply(1:6, function(i) i + 1)
  })
  expect_equal(y, 2:7)
  expect_true(any(grepl("[1-3] of the 4 workers \\(2 vCPU each\\) fit", msgs)), info = paste(msgs, collapse = ""))
  expect_true(any(grepl("starburst_request_quota_increase\\([0-9]+\\)", msgs)))
  expect_lte(starburst_cost()$workers, 3)
})
