#' A starburst future is a future resolved by a starburst worker
#'
#' `StarburstFuture` extends future's `MultiprocessFuture`. Users create
#' starburst futures with [future::future()], `%<-%`, future.apply, furrr and
#' friends after `plan(starburst)`; this constructor is for the backend
#' itself.
#'
#' With future (< 1.40.0) the future is launched by `run()`, which builds the
#' future's expression with `getExpression()` and hands it, serialized, to
#' the engine in one call. With future (>= 1.40.0) the future is launched by
#' the `StarburstFutureBackend` (see [StarburstFutureBackend()]).
#' In both cases `resolved()` never blocks, and `result()` waits in short
#' steps so that the wait can be interrupted. Immediate conditions, such as
#' progress updates from \pkg{progressr}, are relayed by `resolved()` and
#' `result()` as they arrive from the worker.
#'
#' @param expr,envir,substitute,globals,packages,seed,lazy,stdout,conditions,label
#' See [future::future()].
#'
#' @param config (list) The backend configuration, as made from the
#' arguments of [starburst()].
#'
#' @param \ldots Additional named elements passed to [future::Future()].
#'
#' @return A `StarburstFuture` object, which is also a `MultiprocessFuture`
#' and a `Future`.
#'
#' @examples
#' library(future)
#' plan(starburst, workers = 1, backend = "local")
#' f <- future(Sys.getpid())   # made by the plan, not by calling StarburstFuture()
#' class(f)
#' value(f) != Sys.getpid()    # evaluated in a worker's R process
#' plan(sequential)
#' @keywords internal
#' @export
StarburstFuture <- function(expr = NULL, envir = parent.frame(), substitute = TRUE, globals = TRUE, packages = NULL, seed = FALSE, lazy = FALSE, stdout = TRUE, conditions = "condition", label = NULL, config = NULL, ...) {
  if (substitute) expr <- substitute(expr)
  future <- future::MultiprocessFuture(expr = expr, envir = envir, substitute = FALSE,
                                       globals = globals, packages = packages, seed = seed,
                                       lazy = lazy, stdout = stdout, conditions = conditions,
                                       label = label, ...)
  future[["sb_config"]] <- config
  structure(future, class = c("StarburstFuture", class(future)))
}


#' @importFrom future run
#' @export
run.StarburstFuture <- function(future, ...) {
  ## future (>= 1.40.0): futures are launched by the FutureBackend
  if (use_backend_api()) return(NextMethod())

  if (future[["state"]] != "created") {
    stop(future::FutureError(sprintf("A future (%s) can only be launched once", future_label(future)),
                             future = future))
  }

  config <- future[["sb_config"]]
  if (is.null(config)) config <- resolve_config()
  session <- session_acquire(config)
  submit_future(future, session, build_legacy_task)
  invisible(future)
}


#' @importFrom future getExpression
#' @export
getExpression.StarburstFuture <- function(future, expr = future[["expr"]], immediateConditions = TRUE, ...) {
  ## Immediate conditions are captured by future's evaluation code, flagged
  ## as signaled, and passed on unmuffled; worker_child() relays them to the
  ## engine while the future runs (with_relay())
  NextMethod(expr = expr, immediateConditions = immediateConditions)
}


#' @importFrom future resolved
#' @export
resolved.StarburstFuture <- function(x, run = TRUE, timeout = NULL, ...) {
  future <- x

  ## A lazy future not yet launched? Launch it; it is queued, never waited for
  if (future[["state"]] == "created") {
    if (!isFALSE(run)) future <- run(future)
    return(FALSE)
  }

  if (is.null(future[["result"]])) {
    if (!collect_future(future, timeout = 0)) return(FALSE)
  }

  signal_early(future, ...)
  TRUE
}


#' @importFrom future result
#' @export
result.StarburstFuture <- function(future, ...) {
  result <- future[["result"]]
  if (is.null(result)) {
    if (future[["state"]] == "created") future <- run(future)
    interval <- option_seconds("starburst.collect_interval", "collect_interval", 0.2)
    ## Short waits, so that the user can interrupt
    while (!collect_future(future, timeout = interval)) {}
    result <- future[["result"]]
  }
  if (inherits(result, "FutureError")) stop(result)
  result
}


signal_early <- function(future, ...) {
  if (!isTRUE(future[["earlySignal"]])) return(invisible(future))
  signalEarly <- future_internal("signalEarly")
  signalEarly(future, ...)
  invisible(future)
}
