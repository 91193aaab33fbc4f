## The R side of the worker: the persistent R process ("evaluator") that the
## Rust starburst-worker binary starts as
##
##   Rscript --vanilla -e 'starburst:::worker_child()'
##
## Frames: 1 byte kind (ASCII), 4-byte little-endian signed length, payload.
## - child -> worker, on file descriptor 3:
##   'H' once at start-up (R.version.string),
##   'E' an immediate condition (serialize(cond)),
##   'R' the result of a task (serialize(<FutureResult>), or of an error
##       condition when the task could not be evaluated at all).
## - worker -> child, on stdin:
##   'T' a task (the payload from make_payload()), followed by one 'B' frame
##       per blob, in order.
## EOF on stdin ends the process. Anything printed to stdout/stderr goes to
## the worker log; the future's own output is captured by future's
## evaluation code and returned in the FutureResult.

.child <- new.env(parent = emptyenv())


read_exactly <- function(con, n) {
  if (n == 0L) return(raw(0L))
  chunks <- list()
  got <- 0L
  while (got < n) {
    chunk <- readBin(con, what = "raw", n = n - got)
    if (length(chunk) == 0L) return(NULL)    ## EOF
    chunks[[length(chunks) + 1L]] <- chunk
    got <- got + length(chunk)
  }
  if (length(chunks) == 1L) chunks[[1L]] else unlist(chunks, use.names = FALSE)
}

read_frame <- function(con) {
  head <- read_exactly(con, 5L)
  if (is.null(head)) return(NULL)
  len <- readBin(head[2:5], what = "integer", n = 1L, size = 4L, endian = "little")
  if (is.na(len) || len < 0L) stop("starburst worker: bad frame length")
  payload <- read_exactly(con, len)
  if (is.null(payload)) return(NULL)
  list(kind = rawToChar(head[1L]), payload = payload)
}

write_frame <- function(con, kind, payload) {
  stopifnot(is.raw(payload), nchar(kind) == 1L)
  head <- c(charToRaw(kind), writeBin(length(payload), raw(), size = 4L, endian = "little"))
  writeBin(c(head, payload), con)
  flush(con)
  invisible(length(payload))
}


#' Runs the R evaluator of a starburst worker
#'
#' Started by the `starburst-worker` binary, never by users. Reads tasks
#' from `input` and writes results and immediate conditions to `output`
#' until `input` ends.
#'
#' @param input,output Binary connections (default: standard input and
#' file descriptor 3).
#'
#' @return Nothing; the process ends when the worker closes `input`.
#'
#' @keywords internal
#' @noRd
worker_child <- function(input = NULL, output = NULL) {
  if (is.null(input)) {
    input <- file("stdin", open = "rb")
  }
  if (is.null(output)) {
    output <- file("/dev/fd/3", open = "wb")
  }
  .child[["output"]] <- output
  on.exit(.child[["output"]] <- NULL, add = TRUE)

  ## Nested futures run sequentially unless the plan says otherwise
  options(future.plan = NULL)
  Sys.unsetenv("R_FUTURE_PLAN")

  write_frame(output, "H", charToRaw(R.version.string))

  repeat {
    frame <- read_frame(input)
    if (is.null(frame)) break
    if (!identical(frame[["kind"]], "T")) next
    result <- run_task_payload(frame[["payload"]], input)
    if (is.null(result)) break   ## EOF while reading blobs
    write_frame(output, "R", result)
  }
  invisible(NULL)
}


## Runs one task and returns the serialized result, or NULL on EOF
run_task_payload <- function(payload, input) {
  outer <- tryCatch(unserialize(payload), error = identity)
  if (inherits(outer, "error") || !is.list(outer) || is.null(outer[["n_blobs"]])) {
    ## Without the header the blob count is unknown; nothing sensible to do
    msg <- if (inherits(outer, "error")) conditionMessage(outer) else "malformed task payload"
    return(serialize_result(simpleError(paste("starburst worker: cannot read task:", msg))))
  }

  blobs <- vector("list", length = outer[["n_blobs"]])
  for (kk in seq_along(blobs)) {
    frame <- read_frame(input)
    if (is.null(frame)) return(NULL)
    blobs[[kk]] <- frame[["payload"]]
  }

  if (!identical(outer[["protocol"]], payload_protocol)) {
    return(serialize_result(simpleError(sprintf(
      "starburst worker: task protocol %s is not supported by starburst %s on this worker (protocol %d); install the same starburst version on the workers",
      format(outer[["protocol"]]), utils::packageVersion("starburst"), payload_protocol))))
  }

  result <- tryCatch({
    task <- unserialize(outer[["body"]])
    values <- lapply(blobs, FUN = unserialize)
    blobs <- NULL
    evaluate_task(task, values)
  }, error = function(e) {
    simpleError(sprintf("starburst worker (R %s, pid %d): %s",
                        getRversion(), Sys.getpid(), conditionMessage(e)))
  })
  serialize_result(result)
}


## The pipe to the worker carries frames of at most 2^31 - 1 bytes: a larger
## serialized value is refused with a clear error instead of breaking the pipe
serialize_result <- function(result, limit = .Machine$integer.max) {
  raw <- tryCatch(serialize(result, connection = NULL, xdr = FALSE), error = function(e) {
    serialize(simpleError(paste("starburst worker: the result could not be serialized:",
                                conditionMessage(e))), connection = NULL)
  })
  if (length(raw) > limit) {
    size <- length(raw)
    raw <- NULL
    too_large <- structure(class = c("starburst_result_too_large", "error", "condition"), list(
      message = sprintf("the value of this future is %.2f GB serialized, more than the %.2f GB a starburst result can carry. Return a smaller value, or write large results to storage (S3, a file) and return where they are.",
                        size / 1e9, limit / 1e9),
      call = NULL))
    raw <- serialize(too_large, connection = NULL, xdr = FALSE)
  }
  raw
}


## Evaluates a task in the global environment of this R process, the way a
## persistent multisession worker does: the global environment is cleared
## before and after, and future's evaluation code restores options,
## environment variables, the working directory, and the plan
evaluate_task <- function(task, blob_values) {
  clear_globalenv()
  on.exit({
    clear_globalenv()
    if (isTRUE(task[["gc"]])) gc()
  }, add = TRUE)

  immediate <- task[["immediate"]]
  api <- task[["api"]]
  if (identical(api, "legacy")) {
    globals <- restore_globals(task[["globals"]], task[["blob_names"]], blob_values)
    genv <- globalenv()
    for (name in names(globals)) assign(name, globals[[name]], envir = genv)
    globals <- NULL
    expr <- task[["expr"]]
    with_relay(eval(expr, envir = genv, enclos = baseenv()), immediate)
  } else if (identical(api, "backend")) {
    data <- task[["data"]]
    data[["core"]][["globals"]] <- restore_globals(data[["core"]][["globals"]], task[["blob_names"]], blob_values)
    evalFuture <- future_internal("evalFuture")
    with_relay(evalFuture(data), immediate)
  } else {
    stop(sprintf("unknown task type %s", sQuote(format(api))))
  }
}


clear_globalenv <- function() {
  genv <- globalenv()
  rm(list = ls(envir = genv, all.names = TRUE), envir = genv)
}


## Relays conditions of the given classes (immediateCondition by default)
## to the worker as soon as they are signaled; future's evaluation code has
## already recorded them in the FutureResult as signaled
with_relay <- function(expr, classes) {
  if (length(classes) == 0L) return(expr)
  withCallingHandlers(expr, condition = function(cond) {
    if (!inherits(cond, classes)) return()
    send_condition(cond)
    muffle(cond)
  })
}

send_condition <- function(cond) {
  output <- .child[["output"]]
  if (is.null(output)) return(invisible(FALSE))
  raw <- tryCatch(serialize(cond, connection = NULL, xdr = FALSE), error = function(e) NULL)
  if (is.null(raw)) return(invisible(FALSE))
  write_frame(output, "E", raw)
  invisible(TRUE)
}

muffle <- function(cond) {
  for (restart in computeRestarts(cond)) {
    name <- restart[["name"]]
    if (is.character(name) && startsWith(name, "muffle")) invokeRestart(restart)
  }
  invisible(FALSE)
}
