## starburst_setup() / starburst_teardown() against the AWS emulator (`cargo
## xtask emulator`): idempotency, resume after a failure, teardown of exactly
## what set-up made. Skipped on the local backend.

skip_unless_emulator <- function() {
  testthat::skip_if_not(test_backend() == "aws", "needs the AWS emulator")
  testthat::skip_if_not(nzchar(Sys.getenv("AWS_ENDPOINT_URL")), "needs AWS_ENDPOINT_URL")
  testthat::skip_if_not_installed("curl")
}

emulator <- function(path, body = NULL, method = if (is.null(body)) "GET" else "POST") {
  h <- curl::new_handle(customrequest = method)
  if (!is.null(body)) {
    curl::handle_setheaders(h, "Content-Type" = "application/json")
    curl::handle_setopt(h, postfields = jsonlite::toJSON(body, auto_unbox = TRUE))
  }
  res <- curl::curl_fetch_memory(paste0(Sys.getenv("AWS_ENDPOINT_URL"), "/_starburst/", path), handle = h)
  stopifnot(res$status_code < 300)
  jsonlite::fromJSON(rawToChar(res$content), simplifyVector = FALSE)
}

## How often each AWS operation ran since `before` (stats), as "service Operation" = n
ops_since <- function(before) {
  after <- emulator("stats")$requests
  out <- integer(0)
  for (service in names(after)) {
    for (op in names(after[[service]])) {
      n <- after[[service]][[op]] - (before[[service]][[op]] %||% 0L)
      if (n > 0) out[paste(service, op)] <- n
    }
  }
  out
}

## AWS operations that write (create, change, tag or delete something) to
## resources; the object and log-event writes of workers still shutting down
## after earlier tests do not count
writes_since <- function(before) {
  ops <- names(ops_since(before))
  ops <- ops[!grepl("Object|MultipartUpload|UploadPart|LogEvents|LogStream", ops)]
  ops[grepl(" (Create|Put|Delete|Update|Tag|Untag|Attach|Detach|Authorize|Revoke|Register|Run|Stop)", ops)]
}

local_setup_file <- function(.env = parent.frame()) {
  path <- file.path(withr::local_tempdir(.local_envir = .env), "config.json")
  withr::local_envvar(STARBURST_CONFIG = path, .local_envir = .env)
  path
}

test_that("set-up creates everything once, writes the set-up file, and changes nothing when run again", {
  skip_unless_emulator()
  path <- local_setup_file()
  expect_message(
    first <- starburst_setup(region = "us-east-1", name = "sbidem", confirm = FALSE),
    "7 to create"
  )
  expect_s3_class(first, "starburst_setup")
  expect_equal(first$setup_id, "sbidem-us-east-1")
  expect_equal(first$resources$change, rep("created", 7))
  expect_setequal(first$resources$kind, c("S3 bucket", "ECR repository", "ECS cluster", "log group",
                                         "security group", "IAM role"))
  settings <- jsonlite::fromJSON(path, simplifyVector = FALSE)
  for (f in c("region", "bucket", "cluster", "log_group", "repository", "setup_id",
              "task_role_arn", "execution_role_arn", "endpoint_url")) {
    expect_true(length(settings[[f]]) == 1L && nzchar(settings[[f]]), info = f)
  }
  expect_gte(length(settings$subnets), 1L)
  expect_length(settings$security_groups, 1L)
  expect_match(settings$repository, "dkr.ecr.us-east-1.amazonaws.com/sbidem$")

  before <- emulator("stats")$requests
  expect_message(
    second <- starburst_setup(region = "us-east-1", name = "sbidem", confirm = FALSE),
    "Everything exists already"
  )
  expect_equal(second$resources$change, rep("unchanged", 7))
  expect_identical(writes_since(before), character(0))
  expect_identical(jsonlite::fromJSON(path, simplifyVector = FALSE), settings)

  starburst_teardown(confirm = FALSE)
  expect_false(file.exists(path))
})

test_that("a set-up interrupted half-way resumes where it stopped", {
  skip_unless_emulator()
  path <- local_setup_file()
  ## The first role cannot be created (as without iam:CreateRole)
  emulator("faults", list(service = "iam", operation = "CreateRole", status = 403,
                          code = "AccessDenied", message = "not authorized to perform iam:CreateRole"))
  withr::defer(emulator("faults", method = "DELETE"))
  err <- expect_error(
    suppressMessages(starburst_setup(region = "us-east-1", name = "sbresume", confirm = FALSE)),
    class = "starburst_error"
  )
  expect_match(conditionMessage(err), "iam:CreateRole")
  expect_false(file.exists(path))

  msgs <- testthat::capture_messages(
    resumed <- starburst_setup(region = "us-east-1", name = "sbresume", confirm = FALSE)
  )
  expect_true(any(grepl("2 to create \\(\\+\\), 5 existing", msgs)), info = paste(msgs, collapse = ""))
  expect_equal(resumed$resources$change, c(rep("unchanged", 5), rep("created", 2)))
  expect_true(file.exists(path))
  starburst_teardown(confirm = FALSE)
})

test_that("teardown deletes exactly what set-up made and touches nothing untagged", {
  skip_unless_emulator()
  path <- local_setup_file()
  before <- emulator("stats")$requests
  suppressMessages(starburst_setup(region = "us-east-1", name = "sbdown", confirm = FALSE))
  msgs <- testthat::capture_messages(gone <- starburst_teardown(confirm = FALSE))
  expect_equal(nrow(gone), 7L)
  expect_true(any(grepl("will delete the 7 resources of set-up sbdown-us-east-1", msgs)))
  expect_false(file.exists(path))
  ## Nothing of the set-up is left, and a second teardown finds nothing
  expect_message(again <- starburst_teardown(setup_id = "sbdown-us-east-1", region = "us-east-1",
                                             confirm = FALSE),
                 "nothing to delete")
  expect_equal(nrow(again), 0L)
  ## One delete per resource of the set-up, nothing else deleted (the
  ## emulator's own untagged bucket, cluster, log group and repository stay)
  ops <- ops_since(before)
  deletes <- ops[grepl(" Delete", names(ops))]
  expect_equal(deletes[c("s3 DeleteBucket", "ecr DeleteRepository", "ecs DeleteCluster",
                         "logs DeleteLogGroup", "ec2 DeleteSecurityGroup", "iam DeleteRole")],
               c(1, 1, 1, 1, 1, 2), ignore_attr = TRUE)
})

test_that("set-up refuses a bad option before touching AWS", {
  skip_unless_emulator()
  local_setup_file()
  before <- emulator("stats")$requests
  expect_error(starburst_setup(region = "us-east-1", log_retention_days = 10, confirm = FALSE),
               "CloudWatch Logs accepts", class = "starburst_invalid_argument")
  expect_error(starburst_setup(region = "moon", confirm = FALSE), class = "starburst_invalid_argument")
  expect_identical(writes_since(before), character(0))
})
