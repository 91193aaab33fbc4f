#' The starburst backend for future (>= 1.40.0)
#'
#' With future (>= 1.40.0), `plan(starburst, ...)` creates a
#' `StarburstFutureBackend` through this factory (attribute `"factory"` of
#' [starburst()]). It implements future's FutureBackend API:
#' `launchFuture()` submits a future to the engine without waiting for a
#' free worker (futures beyond `workers` are queued by the engine),
#' `interruptFuture()` cancels a running future, `stopWorkers()` closes the
#' session and stops every worker, and `listFutures()`, `nbrOfWorkers()` and
#' `nbrOfFreeWorkers()` report on the futures and workers.
#'
#' The methods are registered when starburst is loaded, and only with
#' future (>= 1.40.0); with older versions of future, starburst uses the
#' legacy Future API ([StarburstFuture]).
#'
#' @inheritParams starburst
#'
#' @param earlySignal,gc,maxSizeOfObjects,interrupts,hooks
#' See `future::FutureBackend()`.
#'
#' @return A `StarburstFutureBackend` object, which is also a
#' `MultiprocessFutureBackend` and a `FutureBackend`.
#'
#' @examples
#' library(future)
#' plan(starburst, workers = 2, backend = "local")
#' nbrOfWorkers()       # answered by the backend
#' nbrOfFreeWorkers()
#' plan(sequential)     # stops the backend's workers
#' @keywords internal
#' @export
StarburstFutureBackend <- function(expr, envir, substitute, lazy, seed, globals, packages, stdout, conditions, label,
                                   workers = NULL, cpu = NULL, memory = NULL, backend = c("aws", "local"),
                                   spot = NULL, arch = c("x86_64", "arm64"), idle_timeout = NULL,
                                   orphan_timeout = NULL, max_retries = 2, max_cost = NULL, max_hourly_cost = NULL, earlySignal = FALSE, gc = FALSE,
                                   maxSizeOfObjects = getOption("future.globals.maxSize", +Inf),
                                   interrupts = TRUE, hooks = FALSE, ...) {
  args <- list(...)
  check_option_names(names(args), allowed = c(backend_option_names, future_tweakable_names))
  if (is.null(interrupts) || is.na(interrupts)) interrupts <- TRUE

  config <- resolve_config(workers = workers, cpu = cpu, memory = memory, backend = backend,
                           spot = spot, arch = arch, idle_timeout = idle_timeout,
                           orphan_timeout = orphan_timeout,
                           max_retries = max_retries, max_cost = max_cost,
                           max_hourly_cost = max_hourly_cost)
  note_local_fallback(config)

  FutureBackend <- future_internal("FutureBackend")
  core <- do.call(FutureBackend, args = c(list(
    earlySignal = earlySignal, gc = gc, maxSizeOfObjects = maxSizeOfObjects,
    interrupts = interrupts, hooks = hooks,
    config = config, session_key = config_key(config),
    workers = config[["workers"]], cpu = config[["millicpu"]] / 1000,
    memory = format_mib(config[["memory_mib"]]), backend = config[["backend"]],
    spot = config[["spot"]], arch = config[["arch"]],
    idle_timeout = config[["idle_timeout_secs"]],
    orphan_timeout = config[["orphan_timeout_secs"]], max_retries = config[["max_retries"]]
  ), args))
  core[["futureClasses"]] <- c("StarburstFuture", "MultiprocessFuture", core[["futureClasses"]])
  structure(core, class = c("StarburstFutureBackend", "MultiprocessFutureBackend", class(core)))
}


## The session of a backend, opened on first use
backend_session <- function(backend) {
  s <- current_session()
  if (!is.null(s) && identical(s[["key"]], backend[["session_key"]])) return(s)
  session_acquire(backend[["config"]])
}


launchFuture.StarburstFutureBackend <- function(backend, future, ...) {
  future[["backend"]] <- backend
  session <- backend_session(backend)
  submit_future(future, session, build_backend_task)
  future
}


interruptFuture.StarburstFutureBackend <- function(backend, future, ...) {
  if (!isTRUE(backend[["interrupts"]])) return(future)
  cancel_future_task(future)
  future
}


stopWorkers.StarburstFutureBackend <- function(backend, interrupt = TRUE, ...) {
  s <- current_session()
  if (!is.null(s) && identical(s[["key"]], backend[["session_key"]])) {
    if (interrupt) {
      for (id in ls(s[["tasks"]], all.names = TRUE)) {
        future <- s[["tasks"]][[id]]
        if (!is.null(future)) cancel_future_task(future)
      }
    }
    session_close(s, reason = "the future plan was changed")
  }
  .state[["noted_key"]] <- NULL
  TRUE
}


listFutures.StarburstFutureBackend <- function(backend, ...) {
  s <- current_session()
  futures <- list()
  if (!is.null(s) && identical(s[["key"]], backend[["session_key"]])) {
    futures <- mget(ls(s[["tasks"]], all.names = TRUE), envir = s[["tasks"]])
    names(futures) <- NULL
  }
  if (length(futures) == 0L) {
    data <- data.frame(counter = integer(0L), start = double(0L), label = character(0L),
                       resolved = logical(0L))
    data[["future"]] <- list()
    return(data)
  }
  rows <- lapply(futures, FUN = function(future) {
    label <- future[["label"]]
    if (is.null(label)) label <- NA_character_
    uuid <- future[["uuid"]]
    start <- future[["start"]]
    data.frame(
      counter = as.integer(uuid[length(uuid)]),
      start = if (is.null(start)) NA_real_ else start,
      label = label,
      resolved = resolved(future)
    )
  })
  data <- do.call(rbind, rows)
  data[["future"]] <- lapply(futures, FUN = list)
  data
}


nbrOfWorkers.StarburstFutureBackend <- function(evaluator) {
  evaluator[["workers"]]
}


nbrOfFreeWorkers.StarburstFutureBackend <- function(evaluator, background = FALSE, ...) {
  backend <- evaluator
  s <- current_session()
  if (is.null(s) || !identical(s[["key"]], backend[["session_key"]])) return(backend[["workers"]])
  free_workers(s, backend[["workers"]])
}


#' @export
print.StarburstFutureBackend <- function(x, ...) {
  NextMethod()
  s <- current_session()
  if (!is.null(s) && identical(s[["key"]], x[["session_key"]])) {
    info <- tryCatch(session_info(s), error = function(e) NULL)
    if (!is.null(info)) {
      cat(sprintf("Starburst session: %s (%s backend; %s live workers, %s busy, %s queued tasks)\n",
                  info[["session_id"]], info[["backend"]], info[["live"]], info[["busy"]], info[["queued"]]))
    }
  } else {
    cat("Starburst session: not started (workers start with the first future)\n")
  }
  invisible(x)
}


## Registers the FutureBackend API methods and the factory; future (>= 1.40.0) only
register_backend_api <- function(ns) {
  future_ns <- asNamespace("future")
  methods <- list(
    launchFuture = launchFuture.StarburstFutureBackend,
    interruptFuture = interruptFuture.StarburstFutureBackend,
    stopWorkers = stopWorkers.StarburstFutureBackend,
    listFutures = listFutures.StarburstFutureBackend,
    nbrOfWorkers = nbrOfWorkers.StarburstFutureBackend,
    nbrOfFreeWorkers = nbrOfFreeWorkers.StarburstFutureBackend
  )
  for (generic in names(methods)) {
    registerS3method(generic, "StarburstFutureBackend", methods[[generic]], envir = future_ns)
  }

  factory <- get("StarburstFutureBackend", envir = ns, inherits = FALSE)
  attr(factory, "tweakable") <- c(backend_option_names, "earlySignal", "gc",
                                  "maxSizeOfObjects", "interrupts", "hooks")
  assign("StarburstFutureBackend", factory, envir = ns)
  for (name in c("starburst", "future_starburst")) {
    fcn <- get(name, envir = ns, inherits = FALSE)
    attr(fcn, "factory") <- factory
    attr(fcn, "tweakable") <- attr(factory, "tweakable")
    assign(name, fcn, envir = ns)
  }
  invisible(TRUE)
}
