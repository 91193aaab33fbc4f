## The R evaluator speaks the frame protocol on its own; here it runs in a
## separate R process (callr) with in-memory connections in place of
## standard input and file descriptor 3.

frame <- function(kind, payload) {
  c(charToRaw(kind), writeBin(length(payload), raw(), size = 4L, endian = "little"), payload)
}

parse_frames <- function(bytes) {
  frames <- list()
  while (length(bytes) >= 5L) {
    len <- readBin(bytes[2:5], "integer", size = 4L, endian = "little")
    frames[[length(frames) + 1L]] <- list(kind = rawToChar(bytes[1]), payload = bytes[5L + seq_len(len)])
    bytes <- bytes[-seq_len(5L + len)]
  }
  frames
}

run_child <- function(input) {
  callr::r(function(input) {
    inp <- rawConnection(input, open = "rb")
    out <- rawConnection(raw(0L), open = "wb")
    starburst:::worker_child(inp, out)
    rawConnectionValue(out)
  }, args = list(input = input), libpath = .libPaths())
}

test_that("worker_child() says hello, evaluates tasks with blobs, relays conditions, and ends on EOF", {
  skip_if_not_installed("callr")
  future <- future::future({
    signalCondition(structure(class = c("immediateCondition", "condition"),
                              list(message = "tick", call = NULL)))
    cat("hello\n")
    message("note")
    sum(big) + small
  }, lazy = TRUE, globals = list(big = stats::rnorm(5000), small = 1))
  withr::local_options(starburst.blob_threshold = 1000)
  if (starburst:::use_backend_api()) {
    task <- starburst:::build_backend_task(future)
  } else {
    class(future) <- c("StarburstFuture", class(future))
    task <- starburst:::build_legacy_task(future)
  }
  expect_length(task$blobs, 1L)

  input <- c(frame("T", task$payload), frame("B", task$blobs[[1]]),
             frame("T", task$payload), frame("B", task$blobs[[1]]))
  frames <- parse_frames(run_child(input))
  kinds <- vapply(frames, `[[`, "", "kind")
  expect_identical(kinds, c("H", "E", "R", "E", "R"))
  expect_match(rawToChar(frames[[1]]$payload), "^R version")
  cond <- unserialize(frames[[2]]$payload)
  expect_s3_class(cond, "immediateCondition")
  result <- unserialize(frames[[3]]$payload)
  expect_s3_class(result, "FutureResult")
  expect_true(is.numeric(result$value))
  expect_identical(result$stdout, "hello\n")
  classes <- vapply(result$conditions, function(c) class(c$condition)[1], "")
  expect_identical(classes, c("immediateCondition", "simpleMessage"))
  expect_identical(result$conditions[[1]]$signaled, 1L)
})

test_that("worker_child() reports a task it cannot read, and keeps going", {
  skip_if_not_installed("callr")
  bad <- serialize(list(protocol = 1L, n_blobs = 1L, body = as.raw(1:10)), NULL)
  good <- starburst:::make_payload(list(api = "legacy", expr = quote(1 + 1), globals = list(),
                                        blob_names = character(0), immediate = character(0)),
                                   blobs = list())
  input <- c(frame("T", bad), frame("B", as.raw(1:3)), frame("T", good))
  frames <- parse_frames(run_child(input))
  kinds <- vapply(frames, `[[`, "", "kind")
  expect_identical(kinds, c("H", "R", "R"))
  err <- unserialize(frames[[2]]$payload)
  expect_s3_class(err, "error")
  expect_identical(unserialize(frames[[3]]$payload), 2)
})

test_that("a result too large for the pipe is refused with a clear error, not a broken pipe", {
  raw <- starburst:::serialize_result(list(x = 1:1000), limit = 100)
  value <- unserialize(raw)
  expect_s3_class(value, "starburst_result_too_large")
  expect_match(conditionMessage(value), "more than the .* GB a starburst result can carry")
  expect_lte(length(raw), 2000L)
  ## Within the limit: the value itself
  expect_identical(unserialize(starburst:::serialize_result(1:3)), 1:3)
})
