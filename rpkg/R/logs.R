#' Worker logs
#'
#' Shows what starburst's workers wrote: the R output and the engine's own
#' messages of a worker. On the local backend that is the worker process's
#' log file; on AWS, its CloudWatch Logs stream (`starburst/worker/<task id>`
#' in the set-up's log group).
#'
#' @param future A future resolved by starburst (or a list of them): the log
#'   of the worker that ran it. Its value must have been collected.
#' @param worker Worker ids (as listed by `starburst_logs()` without
#'   arguments, or in the message of a `starburst_worker_lost` error).
#' @param session The session whose workers to show; `NULL` (default) is the
#'   current session, that is, that of the current `plan(starburst)`.
#' @param n The last `n` lines of each worker's log; `Inf` for all.
#'
#' @return A data frame of class `starburst_logs` with columns `worker`,
#'   `time` (`POSIXct`, `NA` when the backend records none) and `message`,
#'   printed as log lines. Without `future` and `worker`, the logs of every
#'   worker the session started.
#'
#' @examples
#' library(future)
#' plan(starburst, workers = 1, backend = "local")
#' f <- future({ cat("hello from a worker\n", file = stderr()); 42 })
#' value(f)
#' starburst_logs(f, n = 5)
#' plan(sequential)
#' @export
starburst_logs <- function(future = NULL, worker = NULL, session = NULL, n = 50L) {
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n <= 0) {
    invalid_argument("Argument 'n' must be a positive number of lines (or Inf), not %s", deparse_short(n))
  }
  if (!is.null(future)) {
    futures <- if (inherits(future, "Future")) list(future) else future
    if (!is.list(futures) || !all(vapply(futures, inherits, NA, what = "Future"))) {
      invalid_argument("Argument 'future' must be a future or a list of futures, not %s", deparse_short(future))
    }
    worker <- unique(unlist(lapply(futures, function(f) {
      w <- f[["starburst_worker"]]
      if (is.null(w)) {
        starburst_abort(
          sprintf("No worker is known for future (%s): it did not run on starburst, or its value has not been collected yet (call value() first).",
                  future_label(f)),
          class = "starburst_no_worker")
      }
      w
    })))
    if (is.null(session)) session <- futures[[1]][["starburst_session"]]
  }
  if (is.null(session)) session <- current_session()
  if (is.null(session) || !inherits(session, "StarburstSession") || isTRUE(session[["closed"]])) {
    starburst_abort("There is no open starburst session: set plan(starburst, ...) and run futures first (the logs of a closed session's local workers are gone; on AWS they stay in CloudWatch Logs).",
                    class = "starburst_session_closed")
  }
  if (is.null(worker)) worker <- sb_session_workers(session[["ptr"]])
  if (!is.character(worker) || anyNA(worker)) {
    invalid_argument("Argument 'worker' must be a character vector of worker ids, not %s", deparse_short(worker))
  }
  parts <- lapply(worker, function(w) {
    l <- sb_worker_log(session[["ptr"]], w, if (is.finite(n)) n else 0)
    time <- vapply(l[["time"]], function(t) if (is.null(t)) NA_real_ else as.numeric(t), numeric(1))
    data.frame(worker = rep(w, length(l[["message"]])),
               time = as.POSIXct(time, origin = "1970-01-01"),
               message = as.character(unlist(l[["message"]])),
               stringsAsFactors = FALSE)
  })
  out <- do.call(rbind, c(list(data.frame(worker = character(0L), time = as.POSIXct(numeric(0L), origin = "1970-01-01"),
                                          message = character(0L), stringsAsFactors = FALSE)), parts))
  rownames(out) <- NULL
  class(out) <- c("starburst_logs", class(out))
  out
}

#' @export
print.starburst_logs <- function(x, ...) {
  if (nrow(x) == 0L) {
    cat("(no log lines)\n")
    return(invisible(x))
  }
  for (w in unique(x[["worker"]])) {
    rows <- x[x[["worker"]] == w, , drop = FALSE]
    cat(sprintf("== worker %s (%d line%s)\n", w, nrow(rows), if (nrow(rows) == 1L) "" else "s"))
    stamp <- ifelse(is.na(rows[["time"]]), "", format(rows[["time"]], "%H:%M:%S "))
    cat(paste0(stamp, rows[["message"]], "\n"), sep = "")
  }
  invisible(x)
}
