## Classed conditions raised by starburst.
##
## Every error starburst raises itself inherits `starburst_error` plus one
## specific class, so callers can catch exactly what they mean to handle:
##
## - `starburst_invalid_argument`: an argument to `plan(starburst, ...)` is
##   wrong (unknown name, bad value, invalid Fargate size).
## - `starburst_backend_unavailable`: the requested backend cannot be used.
## - `starburst_worker_missing`: the `starburst-worker` binary was not found.
## - `starburst_session_error`: the Rust engine refused to start a session.
## - `starburst_setup_failed`: a step of `starburst_setup()` failed, with
##   `starburst_conflict` (a same-named resource it did not create) or
##   `starburst_permissions_missing` (the permissions pre-flight found missing
##   permissions before anything was created; the condition's `policy` holds
##   the IAM policies that grant them, one per managed policy, `policy_file`
##   a file with each).
##
## Failures of a *future* (its worker or R process died, it was cancelled) are
## `StarburstFutureError`s, which extend future's `FutureError`; see
## StarburstFuture-class.R.

starburst_error <- function(message, class = character(), call = NULL, ...) {
  structure(
    class = unique(c(class, "starburst_error", "error", "condition")),
    list(message = paste(message, collapse = "\n"), call = call, ...)
  )
}

starburst_abort <- function(message, class = character(), call = NULL, ...) {
  stop(starburst_error(message, class = class, call = call, ...))
}

invalid_argument <- function(fmt, ...) {
  starburst_abort(sprintf(fmt, ...), class = "starburst_invalid_argument")
}


## Why a future failed: the engine reports a cause (FailureCause in
## crates/starburst-scheduler, which names no R class), and this table, the
## only place where causes meet R, gives the class of the StarburstFutureError
## that value() raises. ?StarburstFutureError documents every class; a test
## checks that the table covers every cause the engine knows.
failure_classes <- c(
  evaluator_died      = "starburst_evaluator_died",
  worker_lost         = "starburst_worker_lost",
  worker_start_failed = "starburst_worker_start_failed",
  launch_failed       = "starburst_launch_failed",
  budget_exceeded     = "starburst_budget_exceeded",
  invalid_argument    = "starburst_invalid_argument",
  store_unreachable   = "starburst_store_unreachable",
  compute_unreachable = "starburst_compute_unreachable",
  access_denied       = "starburst_access_denied",
  credentials         = "starburst_credentials",
  blob_unavailable    = "starburst_blob_unavailable",
  corrupt_result      = "starburst_corrupt_result",
  worker_error        = "starburst_worker_error",
  engine_error        = "starburst_engine_error"
)

failure_class <- function(cause) {
  cls <- failure_classes[as.character(cause)[1L]]
  if (length(cls) != 1L || is.na(cls)) "starburst_engine_error" else unname(cls)
}


#' Errors of futures that starburst could not resolve
#'
#' A `StarburstFutureError` is raised by `value()` (and `result()`) when a
#' future could not produce a result: the R process evaluating it died
#' (a crash, `quit()`, running out of memory), its worker was lost, the task
#' was cancelled, or the starburst session was closed before the future
#' finished. It extends [future::FutureError], and also carries the class the
#' engine reported, such as `starburst_evaluator_died` or
#' `starburst_worker_lost`.
#'
#' Errors raised *by the future's own expression* are not wrapped: they are
#' relayed by `value()` with their original classes, as with any other future
#' backend.
#'
#' @section Classes:
#' The engine reports why a future failed as a cause, which one table
#' (`failure_classes` in conditions.R) maps to a class; each says why, and what
#' to do:
#' \describe{
#'   \item{`starburst_evaluator_died`}{The R process evaluating the future
#'     ended (`quit()`, a crash in compiled code, killed, out of memory); the
#'     worker restarted R.}
#'   \item{`starburst_worker_lost`}{The worker was lost (Spot interruption,
#'     crash, heartbeat stopped) more often than `max_retries` allows.}
#'   \item{`starburst_worker_start_failed`, `starburst_launch_failed`}{Workers
#'     cannot start (image pull, R missing in the image, no capacity, RunTask
#'     failing for longer than the failure bound).}
#'   \item{`starburst_budget_exceeded`}{The session reached `max_cost` or
#'     `max_hourly_cost`.}
#'   \item{`starburst_store_unreachable`, `starburst_compute_unreachable`}{The
#'     session's data in S3, or the ECS API that watches its workers, kept
#'     failing for longer than option `starburst.failure_timeout` (180 s).}
#'   \item{`starburst_access_denied`}{The AWS identity in use lacks a
#'     permission (the message names the action and resource); fails at once.}
#'   \item{`starburst_credentials`}{No usable AWS credentials: none found, or
#'     they expired (`aws sso login`); fails at once.}
#'   \item{`starburst_blob_unavailable`}{Data of the future (a global) was
#'     removed from the store (a lifecycle rule, a deletion) or damaged; futures
#'     created from then on upload it again, so running the future again works.}
#'   \item{`starburst_corrupt_result`}{The future's result in the store could
#'     not be read (damaged, or written by another starburst version).}
#'   \item{`starburst_invalid_argument`}{The session's spending caps cannot be
#'     enforced (the price catalog lacks the region or size); no future runs.}
#'   \item{`starburst_worker_error`}{The worker broke the protocol (a
#'     starburst version mismatch between this R session and the worker image,
#'     or a bug).}
#'   \item{`starburst_engine_error`}{The session's engine failed (a bug): its
#'     workers were stopped; set the plan again to go on, and please report it.}
#'   \item{`starburst_session_closed`, `starburst_cancelled`}{The plan changed
#'     before the value was collected; the future was cancelled.}
#' }
#'
#' @param message (character) What happened.
#' @param classes (character) Extra classes, most specific first.
#' @param log_tail (character) The last lines of the worker log, if known.
#' @param future The [future::Future] that failed.
#'
#' @return A condition object of class `StarburstFutureError`, which also
#' inherits `FutureError`, `starburst_error`, `error`, and `condition`.
#' Field `log_tail` holds the worker log lines.
#'
#' @examples
#' e <- StarburstFutureError("the R process evaluating the future was killed",
#'                           classes = "starburst_evaluator_died",
#'                           log_tail = c("Loading required package: stats"))
#' class(e)
#' conditionMessage(e)
#'
#' @seealso [starburst()]
#' @export
StarburstFutureError <- function(message, classes = character(), log_tail = character(), future = NULL) {
  msg <- message
  if (length(log_tail) > 0L) {
    msg <- paste0(msg, "\nLast lines of the worker log:\n",
                  paste0("  ", log_tail, collapse = "\n"))
  }
  ex <- future::FutureError(msg, future = future)
  class(ex) <- unique(c(classes, "StarburstFutureError", setdiff(class(ex), c("error", "condition")),
                        "starburst_error", "error", "condition"))
  ex[["log_tail"]] <- as.character(log_tail)
  ex
}


## FutureInterruptError() exists in future (>= 1.40.0) only
future_interrupt_error <- function(message, future = NULL) {
  ns <- asNamespace("future")
  fcn <- get0("FutureInterruptError", envir = ns, mode = "function", inherits = FALSE)
  if (is.function(fcn)) {
    ex <- fcn(message, future = future)
  } else {
    ex <- future::FutureError(message, future = future)
    class(ex) <- c("FutureInterruptError", class(ex))
  }
  class(ex) <- unique(c("starburst_cancelled", class(ex)))
  ex
}
