## The permissions pre-flight: starburst_check_permissions() and the check
## starburst_setup() runs before creating anything. Against the AWS emulator
## (whose iam:SimulatePrincipalPolicy evaluates IAM users' policies) with an
## IAM user created for the test; the summary's format without AWS.

## Creates an IAM user in the emulator allowed everything but `denied`
## (actions); returns its access key. R has no AWS SDK: the emulator's Python
## (boto3) does it.
restricted_user <- function(denied) {
  python <- Sys.getenv("STARBURST_EMULATOR_PYTHON")
  testthat::skip_if_not(nzchar(python), "needs STARBURST_EMULATOR_PYTHON (set by cargo xtask test) to create an IAM user")
  name <- paste0("sbperm-", paste(sample(c(letters, 0:9), 8, replace = TRUE), collapse = ""))
  policy <- jsonlite::toJSON(list(Version = "2012-10-17", Statement = list(list(
    Effect = "Allow", NotAction = I(denied), Resource = "*"))), auto_unbox = TRUE)
  script <- withr::local_tempfile(fileext = ".py", .local_envir = parent.frame())
  writeLines(c(
    "import json, os, sys, boto3",
    "iam = boto3.client('iam', endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name='us-east-1',",
    "                   aws_access_key_id='testing', aws_secret_access_key='testing')",
    "name, policy = sys.argv[1], sys.argv[2]",
    "iam.create_user(UserName=name)",
    "iam.put_user_policy(UserName=name, PolicyName='starburst-test', PolicyDocument=policy)",
    "key = iam.create_access_key(UserName=name)['AccessKey']",
    "print(json.dumps({'id': key['AccessKeyId'], 'secret': key['SecretAccessKey'], 'name': name}))"
  ), script)
  ## R's LD_LIBRARY_PATH can break another Python's ssl module
  out <- system2("env", c("-u", "LD_LIBRARY_PATH", shQuote(python), shQuote(script), name,
                          shQuote(policy)), stdout = TRUE)
  jsonlite::fromJSON(out[length(out)])
}

test_that("a user lacking permissions is told exactly which, with the policy that grants them", {
  skip_unless_emulator()
  key <- restricted_user(c("ecs:CreateCluster", "iam:PassRole"))
  withr::local_envvar(AWS_ACCESS_KEY_ID = key$id, AWS_SECRET_ACCESS_KEY = key$secret)
  msg <- testthat::capture_messages(
    check <- starburst_check_permissions(region = "us-east-1", name = "sbperm")
  )
  expect_s3_class(check, "starburst_permissions")
  expect_true(check$simulated)
  expect_equal(check$caller, sprintf("arn:aws:iam::123456789012:user/%s", key$name))
  n <- nrow(check$permissions)
  expect_gt(n, 80)
  msg <- paste(msg, collapse = "")
  expect_match(msg, sprintf("%d of %d permissions allowed", n - 3L, n), fixed = TRUE)
  expect_match(msg, "ecs:CreateCluster on arn:aws:ecs:us-east-1:123456789012:cluster/sbperm", fixed = TRUE)
  expect_equal(sort(check$missing$action), c("ecs:CreateCluster", "iam:PassRole", "iam:PassRole"))
  expect_true(all(check$missing$status == "implicit_deny"))
  expect_setequal(check$missing$resource[check$missing$action == "iam:PassRole"],
                  c("arn:aws:iam::123456789012:role/sbperm-us-east-1-execution",
                    "arn:aws:iam::123456789012:role/sbperm-us-east-1-task"))
  expect_true(all(nzchar(check$missing$why)))
  ## The policy grants what is missing, and nothing else
  policy <- jsonlite::fromJSON(check$policy, simplifyVector = FALSE)
  actions <- unlist(lapply(policy$Statement, function(s) unlist(s$Action)))
  expect_setequal(actions, c("ecs:CreateCluster", "iam:PassRole"))
  expect_output(print(check), "permissions allowed")
})

test_that("set-up stops before creating anything when a permission is missing", {
  skip_unless_emulator()
  path <- local_setup_file()
  key <- restricted_user("logs:CreateLogGroup")
  withr::local_envvar(AWS_ACCESS_KEY_ID = key$id, AWS_SECRET_ACCESS_KEY = key$secret)
  before <- emulator("stats")$requests
  err <- expect_error(
    starburst_setup(region = "us-east-1", name = "sbperm", confirm = FALSE),
    class = "starburst_permissions_missing"
  )
  expect_s3_class(err, "starburst_setup_failed")
  expect_s3_class(err, "starburst_error")
  expect_match(conditionMessage(err), "created nothing")
  expect_match(conditionMessage(err),
               "logs:CreateLogGroup on arn:aws:logs:us-east-1:123456789012:log-group:/sbperm/workers",
               fixed = TRUE)
  expect_match(conditionMessage(err), err$policy_file, fixed = TRUE)
  expect_identical(paste(readLines(err$policy_file), collapse = "\n"), err$policy)
  expect_match(err$policy, "logs:CreateLogGroup", fixed = TRUE)
  ## Nothing was written, looked up by tag, or planned
  ops <- names(ops_since(before))
  expect_identical(writes_since(before), character(0))
  expect_false(any(grepl("ListRoleTags|CreateBucket|ListTagsForResource", ops)), info = paste(ops, collapse = ", "))
  expect_false(file.exists(path))
})

test_that("keys IAM cannot simulate are said so; set-up goes on after saying it", {
  skip_unless_emulator()
  ## The emulator's default "testing" keys are moto's root-like user
  msg <- testthat::capture_messages(
    check <- starburst_check_permissions(region = "us-east-1", name = "sbperm2")
  )
  expect_false(check$simulated)
  expect_null(check$principal)
  expect_match(check$note, "cannot simulate")
  expect_equal(nrow(check$missing), 0L)
  expect_true(all(check$permissions$status %in% c("probed_allowed", "unknown")))
  expect_true("probed_allowed" %in% check$permissions$status)
  expect_match(paste(msg, collapse = ""), "Could not simulate")
  expect_false(is.null(check$policy))
  ## starburst_setup()'s pre-flight alone (set-up itself is tested in test-setup.R)
  options <- starburst:::setup_options(name = "sbperm2")
  expect_message(starburst:::preflight_permissions(options, "us-east-1"),
                 "could not check every AWS permission")
})

test_that("the permissions check refuses bad arguments before calling AWS", {
  expect_error(starburst_check_permissions(region = "moon"), class = "starburst_invalid_argument")
  expect_error(starburst_check_permissions(name = NA), class = "starburst_invalid_argument")
  expect_error(starburst_check_permissions(quiet = "no"), class = "starburst_invalid_argument")
  expect_error(starburst_setup(check_permissions = NA), class = "starburst_invalid_argument")
})

test_that("the summary says what is allowed, what is missing and gives the policy", {
  table <- data.frame(
    action = c("s3:ListAllMyBuckets", "ecs:RunTask", "iam:PassRole"),
    resource = c("*", "arn:aws:ecs:r:1:task-definition/starburst-worker-*", "arn:aws:iam::1:role/x"),
    condition = c(NA, "ArnEquals ecs:cluster = arn:aws:ecs:r:1:cluster/starburst", NA),
    why = c("find the bucket", "start workers", "give the role to workers"),
    status = c("allowed", "explicit_deny", "unknown"),
    detail = c(NA, "denied by guard", NA),
    stringsAsFactors = FALSE
  )
  x <- structure(list(caller = "arn:aws:iam::1:user/a", principal = "arn:aws:iam::1:user/a",
                      simulated = TRUE, note = NULL, permissions = table,
                      missing = table[2, ], policy = "{\"Version\": \"2012-10-17\"}"),
                 class = "starburst_permissions")
  lines <- format(x)
  expect_match(lines[2], "1 of 3 permissions allowed", fixed = TRUE)
  expect_true(any(grepl("ecs:RunTask on arn:aws:ecs:r:1:task-definition/starburst-worker-* (when ArnEquals ecs:cluster",
                        lines, fixed = TRUE)))
  expect_identical(lines[length(lines)], x$policy)
  ## More than one managed policy holds: each document, said so
  two <- x
  two$policy <- c("{\"Statement\": [1]}", "{\"Statement\": [2]}")
  lines <- format(two)
  expect_true(any(grepl("2 IAM policies (more than one managed policy holds)", lines, fixed = TRUE)))
  expect_identical(utils::tail(lines, 2), two$policy)
  x$simulated <- FALSE
  x$note <- "no right to call the simulator"
  x$missing <- table[0, ]
  lines <- format(x)
  expect_match(lines[2], "Could not simulate the policies: no right to call the simulator.", fixed = TRUE)
  expect_match(lines[3], "1 of 3 permissions allowed, 0 refused; the other 2 are unknown", fixed = TRUE)
  x$policy <- NULL
  expect_match(format(x)[4], "Nothing is missing")
})
