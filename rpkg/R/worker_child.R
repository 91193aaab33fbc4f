## The R side of the worker: the persistent R process ("evaluator") that the
## Rust starburst-worker binary starts as
##
##   Rscript --vanilla -e 'starburst:::worker_child()'
##
## Frames: 1 byte kind (ASCII), 4-byte little-endian signed length, payload.
## - child -> worker, on file descriptor 3:
##   'H' once at start-up (R.version.string),
##   'E' an immediate condition (serialize(cond)),
##   'K' the blobs this process keeps in memory now (hex hashes, one per
##       line), before each result,
##   'R' the result of a task (serialize(<FutureResult>), or of an error
##       condition when the task could not be evaluated at all).
## - worker -> child, on stdin:
##   'T' a task (the payload from make_payload()), then
##   'I' its blobs in order, one line each: "<hash> <size> <S|M>", S when
##       the blob's content follows, M when this process said it keeps it,
##   'B' one frame per blob marked S, in order.
## Blobs are kept (unserialized, keyed by hash) up to STARBURST_KEEP_BYTES
## of serialized size and 16 values, least recently used dropped first: a
## large global shared by many futures is moved and unserialized once per
## process.
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
    output <- file("/dev/fd/3", open = "wb", raw = TRUE)
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
  index_frame <- read_frame(input)
  if (is.null(index_frame)) return(NULL)
  index <- if (identical(index_frame[["kind"]], "I")) parse_blob_index(index_frame[["payload"]])
  if (is.null(index)) {
    return(serialize_result(simpleError("starburst worker: the task's blob index is missing or malformed; install the same starburst version on the workers as on the client")))
  }
  sent <- vector("list", length = nrow(index))
  for (kk in which(index[["how"]] == "S")) {
    frame <- read_frame(input)
    if (is.null(frame)) return(NULL)
    sent[[kk]] <- frame[["payload"]]
  }

  outer <- tryCatch(unserialize(payload), error = identity)
  if (inherits(outer, "error") || !is.list(outer) || is.null(outer[["protocol"]])) {
    msg <- if (inherits(outer, "error")) conditionMessage(outer) else "malformed task payload"
    return(serialize_result(simpleError(paste("starburst worker: cannot read task:", msg))))
  }
  if (!identical(outer[["protocol"]], payload_protocol)) {
    return(serialize_result(simpleError(sprintf(
      "starburst worker: task protocol %s is not supported by starburst %s on this worker (protocol %d); install the same starburst version on the workers",
      format(outer[["protocol"]]), utils::packageVersion("starburst"), payload_protocol))))
  }
  if (!identical(as.integer(outer[["n_blobs"]]), nrow(index))) {
    return(serialize_result(simpleError(sprintf(
      "starburst worker: the task has %s blobs and its index lists %d",
      format(outer[["n_blobs"]]), nrow(index)))))
  }

  result <- tryCatch({
    task <- unserialize(outer[["body"]])
    values <- blob_values(index, sent)
    sent <- NULL
    keep_blobs(index, values)
    evaluate_task(task, values)
  }, error = function(e) {
    simpleError(sprintf("starburst worker (R %s, pid %d): %s",
                        getRversion(), Sys.getpid(), conditionMessage(e)))
  })
  serialize_result(result)
}


## The 'I' frame as data.frame(hash, size, how), or NULL when malformed
parse_blob_index <- function(payload) {
  lines <- strsplit(rawToChar(payload), "\n", fixed = FALSE)[[1L]]
  lines <- lines[nzchar(lines)]
  parts <- strsplit(lines, " ", fixed = TRUE)
  if (!all(lengths(parts) == 3L)) return(NULL)
  index <- data.frame(hash = vapply(parts, `[[`, "", 1L),
                      size = as.numeric(vapply(parts, `[[`, "", 2L)),
                      how = vapply(parts, `[[`, "", 3L),
                      stringsAsFactors = FALSE)
  if (anyNA(index[["size"]]) || !all(index[["how"]] %in% c("S", "M"))) return(NULL)
  index
}

## The values of a task's blobs: unserialized when sent, else the kept ones
blob_values <- function(index, sent) {
  kept <- kept_blobs()
  values <- vector("list", length = nrow(index))
  for (kk in seq_len(nrow(index))) {
    if (index[["how"]][kk] == "S") {
      values[kk] <- list(unserialize(sent[[kk]]))
      sent[kk] <- list(NULL)
    } else {
      hash <- index[["hash"]][kk]
      if (!exists(hash, envir = kept, inherits = FALSE)) {
        stop(sprintf("blob %s was expected in memory and is not there", hash))
      }
      values[kk] <- list(kept[[hash]])
    }
  }
  values
}

## The kept values (an environment: hash -> value), with their sizes and last
## uses in named vectors, so that keeping one more costs the same with a
## thousand kept as with one
kept_blobs <- function() {
  if (is.null(.child[["kept"]])) {
    .child[["kept"]] <- new.env(parent = emptyenv())
    .child[["kept_size"]] <- numeric(0L)
    .child[["kept_used"]] <- numeric(0L)
    .child[["kept_tick"]] <- 0
    budget <- suppressWarnings(as.numeric(Sys.getenv("STARBURST_KEEP_BYTES", "0")))
    .child[["keep_budget"]] <- if (is.na(budget) || budget < 0) 0 else budget
  }
  .child[["kept"]]
}

## At most this many values are kept, whatever their size: futures that each
## bring their own global (never used again) would otherwise grow the process
## by each one, a fresh allocation (page faults) per blob, where a bounded set
## lets R reuse the memory of the dropped ones (1,000 futures with a 1 MB
## global each: 10% slower kept without a bound than not kept at all)
max_kept <- 16L

## Keeps the task's blobs that can be kept (a value with no environment,
## external pointer or data.table inside: see sb_identity()) within the
## budget, drops the least recently used beyond it, and tells the worker
## what is kept ('K'). A future cannot see another's leftovers: every future
## binds its globals anew from its own blob list, and a kept value is
## shared with the global environment while a future runs, so R copies it
## before any change the future makes (copy-on-modify).
keep_blobs <- function(index, values) {
  kept <- kept_blobs()
  budget <- .child[["keep_budget"]]
  for (kk in seq_len(nrow(index))) {
    hash <- index[["hash"]][kk]
    size <- index[["size"]][kk]
    .child[["kept_tick"]] <- .child[["kept_tick"]] + 1
    if (!is.na(.child[["kept_used"]][hash])) {
      .child[["kept_used"]][hash] <- .child[["kept_tick"]]
    } else if (size <= budget && !is.null(sb_identity(values[[kk]]))) {
      assign(hash, values[[kk]], envir = kept)
      .child[["kept_size"]][hash] <- size
      .child[["kept_used"]][hash] <- .child[["kept_tick"]]
    }
  }
  sizes <- .child[["kept_size"]]
  if (sum(sizes) > budget || length(sizes) > max_kept) {
    drop <- lru_drop(sizes, .child[["kept_used"]], budget, max_kept)
    rm(list = drop, envir = kept)
    keep <- !(names(sizes) %in% drop)
    .child[["kept_size"]] <- sizes[keep]
    .child[["kept_used"]] <- .child[["kept_used"]][names(sizes)[keep]]
  }
  output <- .child[["output"]]
  if (!is.null(output)) {
    write_frame(output, "K", charToRaw(paste(names(.child[["kept_size"]]), collapse = "\n")))
  }
  invisible(NULL)
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
