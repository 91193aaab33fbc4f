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

run_child <- function(input, keep_bytes = 0) {
  callr::r(function(input) {
    inp <- rawConnection(input, open = "rb")
    out <- rawConnection(raw(0L), open = "wb")
    starburst:::worker_child(inp, out)
    rawConnectionValue(out)
  }, args = list(input = input), libpath = .libPaths(),
  env = c(callr::rcmd_safe_env(), STARBURST_KEEP_BYTES = format(keep_bytes, scientific = FALSE)))
}

## The 'I' frame: one "<hash> <size> <S|M>" line per blob
index <- function(...) {
  lines <- c(...)
  frame("I", charToRaw(paste0(lines, if (length(lines)) "\n", collapse = "")))
}

hash_of <- function(i) strrep(as.character(i), 64L)

## A legacy or backend task of `expr` with the given globals, as the client builds it
task_of <- function(expr, globals) {
  future <- future::future(expr, substitute = FALSE, lazy = TRUE, globals = globals)
  if (starburst:::use_backend_api()) {
    starburst:::build_backend_task(future)
  } else {
    class(future) <- c("StarburstFuture", class(future))
    starburst:::build_legacy_task(future)
  }
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

  line <- paste(hash_of(1), length(task$blobs[[1]]), "S")
  input <- c(frame("T", task$payload), index(line), frame("B", task$blobs[[1]]),
             frame("T", task$payload), index(line), frame("B", task$blobs[[1]]))
  frames <- parse_frames(run_child(input))
  kinds <- vapply(frames, `[[`, "", "kind")
  ## Nothing kept without a budget: 'K' (before the evaluation) says so
  expect_identical(kinds, c("H", "K", "E", "R", "K", "E", "R"))
  expect_length(frames[[2]]$payload, 0L)
  frames <- frames[kinds != "K"]
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
  bad <- serialize(list(protocol = 2L, n_blobs = 1L, body = as.raw(1:10)), NULL)
  good <- starburst:::make_payload(list(api = "legacy", expr = quote(1 + 1), globals = list(),
                                        blob_names = character(0), immediate = character(0)),
                                   blobs = list())
  old <- serialize(list(protocol = 1L, n_blobs = 0L, body = as.raw(1:10)), NULL)
  input <- c(frame("T", bad), index(paste(hash_of(1), 3, "S")), frame("B", as.raw(1:3)),
             frame("T", old), index(),
             frame("T", good), index(paste(hash_of(2), 3, "M")),
             frame("T", good), index())
  frames <- parse_frames(run_child(input))
  kinds <- vapply(frames, `[[`, "", "kind")
  expect_identical(kinds, c("H", "R", "R", "R", "K", "R"))
  expect_match(conditionMessage(unserialize(frames[[4]]$payload)), "has 0 blobs and its index lists 1")
  err <- unserialize(frames[[2]]$payload)
  expect_s3_class(err, "error")
  expect_match(conditionMessage(unserialize(frames[[3]]$payload)), "task protocol 1 is not supported")
  expect_identical(unserialize(frames[[6]]$payload), 2)
})

test_that("worker_child() keeps large globals in memory: sent and unserialized once, never changed by a future", {
  skip_if_not_installed("callr")
  withr::local_options(starburst.blob_threshold = 1000)
  x <- c(1, 2, 3, stats::runif(4997))   ## not as.numeric(1:5000): ALTREP, 134 bytes serialized
  e <- new.env()
  e$v <- c(1, stats::runif(4999))
  change_x <- task_of(quote({ x[1] <- -1; sum(x) }), list(x = x))
  read_x <- task_of(quote(x[1:3]), list(x = x))
  change_e <- task_of(quote({ e$v[1] <- -1; e$v[1] }), list(e = e))
  read_e <- task_of(quote(e$v[1]), list(e = e))
  blob_x <- change_x$blobs[[1]]
  blob_e <- change_e$blobs[[1]]
  sent_x <- paste(hash_of(1), length(blob_x), "S")
  kept_x <- paste(hash_of(1), length(blob_x), "M")
  sent_e <- paste(hash_of(2), length(blob_e), "S")
  input <- c(frame("T", change_x$payload), index(sent_x), frame("B", blob_x),
             frame("T", read_x$payload), index(kept_x),
             frame("T", change_e$payload), index(sent_e), frame("B", blob_e),
             ## the environment was not kept: it must be sent again
             frame("T", read_e$payload), index(sent_e), frame("B", blob_e),
             frame("T", read_x$payload), index(kept_x))
  frames <- parse_frames(run_child(input, keep_bytes = 1e6))
  kinds <- vapply(frames, `[[`, "", "kind")
  expect_identical(kinds, c("H", rep(c("K", "R"), 5L)))
  kept <- vapply(frames[kinds == "K"], function(f) rawToChar(f$payload), "")
  expect_identical(kept, rep(hash_of(1), 5L))
  values <- lapply(frames[kinds == "R"], function(f) unserialize(f$payload)$value)
  expect_equal(values[[1]], sum(x) - 2)
  ## the change the first future made is not seen by the next ones
  expect_identical(values[[2]], c(1, 2, 3))
  expect_identical(values[[3]], -1)
  expect_identical(values[[4]], 1)
  expect_identical(values[[5]], c(1, 2, 3))

  ## Within the budget only; a blob said to be in memory that is not: an
  ## error, not a wrong value
  input <- c(frame("T", change_x$payload), index(sent_x), frame("B", blob_x),
             frame("T", read_x$payload), index(kept_x))
  frames <- parse_frames(run_child(input, keep_bytes = length(blob_x) - 1))
  expect_identical(vapply(frames, `[[`, "", "kind"), c("H", "K", "R", "R"))
  expect_identical(rawToChar(frames[[2]]$payload), "")
  expect_match(conditionMessage(unserialize(frames[[4]]$payload)), "expected in memory")
})

test_that("worker_child() drops the least recently used kept globals beyond its budget", {
  skip_if_not_installed("callr")
  withr::local_options(starburst.blob_threshold = 1000)
  tasks <- lapply(1:3, function(i) task_of(quote(x[1]), list(x = c(i, stats::runif(4999)))))
  size <- length(tasks[[1]]$blobs[[1]])
  line <- function(i, how) paste(hash_of(i), size, how)
  run <- function(i, how) {
    c(frame("T", tasks[[i]]$payload), index(line(i, how)),
      if (how == "S") frame("B", tasks[[i]]$blobs[[1]]))
  }
  ## room for two: 1 and 2 kept, 1 used again, 3 arrives: 2 (least recently
  ## used) goes, and a task that counts on it gets an error
  input <- c(run(1, "S"), run(2, "S"), run(1, "M"), run(3, "S"), run(1, "M"), run(2, "M"))
  frames <- parse_frames(run_child(input, keep_bytes = 2 * size + 10))
  kinds <- vapply(frames, `[[`, "", "kind")
  kept <- lapply(frames[kinds == "K"], function(f) sort(strsplit(rawToChar(f$payload), "\n")[[1]]))
  expect_identical(kept[1:5], lapply(list(1, 1:2, 1:2, c(1, 3), c(1, 3)), function(i) sort(hash_of(i))))
  values <- lapply(frames[kinds == "R"], function(f) unserialize(f$payload))
  expect_identical(vapply(values[1:5], function(v) v$value, 0), c(1, 2, 1, 3, 1))
  expect_match(conditionMessage(values[[6]]), "expected in memory")

  ## and at most 16 values, however large the budget
  hash <- function(i) sprintf("%064x", i)
  input <- unlist(lapply(1:17, function(i) {
    c(frame("T", tasks[[1]]$payload), index(paste(hash(i), size, "S")), frame("B", tasks[[1]]$blobs[[1]]))
  }))
  frames <- parse_frames(run_child(input, keep_bytes = 1e9))
  kept <- Filter(function(f) f$kind == "K", frames)
  expect_setequal(strsplit(rawToChar(kept[[16]]$payload), "\n")[[1]], hash(1:16))
  expect_setequal(strsplit(rawToChar(kept[[17]]$payload), "\n")[[1]], hash(2:17))
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
