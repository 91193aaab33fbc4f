## Helpers for the end-to-end tests. The end-to-end tests run on the backend
## named by STARBURST_TEST_BACKEND: "local" (default), or "aws", against the
## AWS emulator of `cargo xtask emulator` (whose set-up file STARBURST_CONFIG
## names), with the same expectations.

test_backend <- function() {
  backend <- Sys.getenv("STARBURST_TEST_BACKEND", "local")
  stopifnot(backend %in% c("local", "aws"))
  backend
}

## Skips a test that inspects local worker processes
skip_unless_local <- function() {
  testthat::skip_if_not(test_backend() == "local", "inspects local worker processes")
}

## Sets plan(starburst, ...) for the calling test and plan(sequential) after it
local_starburst <- function(workers = 2L, ..., .env = parent.frame()) {
  oplan <- future::plan(starburst::starburst, workers = workers, backend = test_backend(), ...)
  withr::defer(future::plan(oplan), envir = .env)
  invisible(oplan)
}

## Is a process with this PID alive?
pid_alive <- function(pid) {
  isTRUE(tools::pskill(pid, signal = 0L))
}

## Waits up to 'timeout' seconds for all of 'pids' to be gone
wait_gone <- function(pids, timeout = 15) {
  t0 <- Sys.time()
  repeat {
    alive <- vapply(pids, pid_alive, NA)
    if (!any(alive)) return(TRUE)
    if (difftime(Sys.time(), t0, units = "secs") > timeout) return(FALSE)
    Sys.sleep(0.1)
  }
}

## PIDs of the starburst-worker processes started by this R process
worker_pids <- function(parent = Sys.getpid()) {
  out <- suppressWarnings(system2("ps", c("-o", "pid=,comm=", "--ppid", parent), stdout = TRUE))
  out <- trimws(out)
  out <- out[grepl("starburst-work", out, fixed = TRUE)]
  as.integer(sub("[[:space:]].*$", "", out))
}

has_cancel <- function() {
  exists("cancel", envir = asNamespace("future"), mode = "function", inherits = FALSE) &&
    "cancel" %in% getNamespaceExports("future")
}

valid_aws_setup <- '{"region":"us-east-1","bucket":"b","prefix":"starburst","cluster":"starburst","subnets":["subnet-1"],"security_groups":["sg-1"],"log_group":"/starburst/workers","image":"starburst-sim:local"}'

## A throw-away AWS set-up file, as starburst_setup() would write
local_aws_setup <- function(contents = valid_aws_setup, .env = parent.frame()) {
  dir <- withr::local_tempdir(.local_envir = .env)
  withr::local_envvar(R_USER_CONFIG_DIR = dir, .local_envir = .env)
  path <- file.path(tools::R_user_dir("starburst", "config"), "config.json")
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  writeLines(contents, path)
  invisible(path)
}

## Skips a test that needs the AWS emulator and its control endpoints
skip_unless_emulator <- function() {
  testthat::skip_if_not(test_backend() == "aws", "needs the AWS emulator")
  testthat::skip_if_not(nzchar(Sys.getenv("AWS_ENDPOINT_URL")), "needs AWS_ENDPOINT_URL")
  testthat::skip_if_not_installed("curl")
}

## Calls an endpoint of the AWS emulator (`cargo xtask emulator`): stats, faults,
## Spot interruptions, its simulated tasks
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

## base R has it from 4.4; the package's own is not visible to test_file()
`%||%` <- function(x, y) if (is.null(x)) y else x

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
  ops <- names(ops_since(before)) %||% character(0)
  ops <- ops[!grepl("Object|object|MultipartUpload|UploadPart|uploads|LogEvents|LogStream", ops)]
  ## the emulator names S3 operations by method and resource ("s3 PUT bucket ?tagging")
  ops[grepl(" (Create|Put|Delete|Update|Tag|Untag|Attach|Detach|Authorize|Revoke|Register|Run|Stop)| (PUT|POST|DELETE) ", ops)]
}

local_setup_file <- function(.env = parent.frame()) {
  path <- file.path(withr::local_tempdir(.local_envir = .env), "config.json")
  withr::local_envvar(STARBURST_CONFIG = path, .local_envir = .env)
  path
}
