## The session: one Rust engine session (sb_session_new()) with its workers.
##
## There is at most one open session per R process, like future's own
## cluster registry. A session is identified by its configuration key; a
## future created under another starburst configuration closes the old
## session and opens a new one.
##
## Nothing may be left running after the plan changes. How that is ensured:
## - future (>= 1.40.0): plan() calls stopWorkers() on the backend
##   (StarburstFutureBackend-class.R), which closes the session.
## - future (< 1.40.0): plan() has no clean-up hook for third-party backends,
##   but it always stops the cluster held in its internal cluster registry.
##   starburst registers a stand-in "cluster" there whose stopCluster() method
##   closes the session (register_plan_cleanup()).
## - Both: a top-level task callback closes the session as soon as the
##   current plan is no longer a starburst plan (a safety net, e.g. when the
##   plan is changed with .cleanup = FALSE), and a finalizer closes it when
##   the R session ends. The Rust external pointer has its own finalizer too.

.state <- new.env(parent = emptyenv())
.state[["session"]] <- NULL
.state[["counter"]] <- 0L
.state[["noted_key"]] <- NULL
.state[["retired"]] <- list()


current_session <- function() {
  s <- .state[["session"]]
  if (is.null(s) || isTRUE(s[["closed"]])) return(NULL)
  s
}


## Returns the open session for 'config', opening one if needed. The
## configuration can change while futures run without the plan changing (a
## preference, an option, mc.cores): the old session is then retired, not
## closed. It takes no new futures, its running futures keep their workers and
## values, and it closes once R has collected them (or when the plan changes).
session_acquire <- function(config) {
  s <- current_session()
  ## Every future of a plan comes with the configuration of the one before:
  ## no key to compute (jsonlite costs about a millisecond per future)
  if (!is.null(s) && identical(s[["requested"]], config)) return(s)
  key <- config_key(config)
  if (is.null(s) || !identical(s[["key"]], key)) {
    if (!is.null(s)) session_retire(s)
    s <- session_open(config, key = key)
  }
  s[["requested"]] <- config
  s
}

## Retires a session replaced by one of another configuration: closed at
## once when nothing of it is pending, else once its last future is collected
session_retire <- function(s) {
  if (session_active_count(s) == 0L) {
    return(session_close(s, reason = "a future was created under another starburst configuration"))
  }
  s[["retiring"]] <- TRUE
  if (identical(.state[["session"]], s)) .state[["session"]] <- NULL
  .state[["retired"]] <- c(Filter(function(r) !isTRUE(r[["closed"]]), .state[["retired"]]), list(s))
  invisible(TRUE)
}

## Closes every retired session (the plan changed, or the package unloads)
close_retired <- function(reason) {
  for (r in .state[["retired"]]) session_close(r, reason = reason)
  .state[["retired"]] <- list()
  invisible()
}


session_open <- function(config, key = config_key(config)) {
  if (identical(config[["backend"]], "aws") && !is.null(config[["aws"]][["repository"]])) {
    ## Workers run this R environment: its runtime (and in image mode its image)
    ## made sure of, built when missing, before any worker starts; in sync mode
    ## the workers restore the environment's packages themselves
    env <- ensure_environment(config[["aws"]], arch = config[["arch"]])
    config[["aws"]][["image"]] <- env$image
    if (identical(env$mode, "sync")) {
      config[["aws"]][["environment"]] <- list(tag = env$tag, manifest = env$manifest)
    }
  }
  if (identical(config[["backend"]], "aws")) {
    ## Concurrency stays inside the Fargate vCPU quota; futures beyond it queue
    config[["engine_workers"]] <- fit_workers_in_quota(config)
  }
  root <- tempfile("starburst-session-")
  dir.create(root, recursive = TRUE, showWarnings = FALSE)
  json <- session_config_json(config, root = root)
  ptr <- tryCatch(sb_session_new(json), error = function(e) {
    starburst_abort(sprintf("Failed to start a starburst session (%s backend): %s",
                            config[["backend"]], conditionMessage(e)),
                    class = "starburst_session_error")
  })

  .state[["counter"]] <- .state[["counter"]] + 1L
  s <- new.env(parent = emptyenv())
  s[["id"]] <- .state[["counter"]]
  s[["ptr"]] <- ptr
  s[["key"]] <- key
  s[["config"]] <- config
  s[["root"]] <- root
  s[["tasks"]] <- new.env(parent = emptyenv())   ## task id -> Future
  s[["draining"]] <- character(0L)               ## cancelled tasks not yet reported as ended
  s[["sent"]] <- new.env(parent = emptyenv())    ## identity -> large global sent (payload.R)
  s[["sent_tick"]] <- 0
  s[["globals_serialized"]] <- 0L                ## large globals serialized and stored
  s[["globals_reused"]] <- 0L                    ## ... and found again, not serialized
  s[["closed"]] <- FALSE
  class(s) <- "StarburstSession"
  reg.finalizer(s, function(s) session_close(s, reason = "the R session ended"), onexit = TRUE)

  .state[["session"]] <- s
  register_plan_cleanup(s)
  install_task_callback()
  note_swept(s)
  s
}


## Closes a session: stops its workers and fails the futures it still runs
session_close <- function(s, reason = "the starburst session was closed") {
  if (is.null(s) || isTRUE(s[["closed"]])) return(invisible(FALSE))
  s[["closed"]] <- TRUE
  forget_sent(s)   ## the large globals it kept alive
  if (identical(.state[["session"]], s)) .state[["session"]] <- NULL
  .state[["noted_key"]] <- NULL

  ## Futures that had not been collected can no longer be
  for (id in ls(s[["tasks"]], all.names = TRUE)) {
    future <- s[["tasks"]][[id]]
    if (is.null(future[["result"]])) {
      label <- future_label(future)
      future[["result"]] <- StarburstFutureError(
        sprintf("Future (%s) of class %s was not resolved: its starburst session was closed, because %s. Collect the values of futures before changing the plan.",
                label, class(future)[1], reason),
        classes = "starburst_session_closed", future = future)
      future[["state"]] <- "failed"
    }
  }
  rm(list = ls(s[["tasks"]], all.names = TRUE), envir = s[["tasks"]])

  ## The final bill and history, once every worker has stopped (starburst_cost(),
  ## starburst_timeline())
  closed <- tryCatch(sb_session_close(s[["ptr"]]), error = function(e) NULL)
  s[["cost"]] <- if (!inherits(closed[["cost"]], "starburst_rust_error")) closed[["cost"]]
  s[["timeline"]] <- closed[["timeline"]]
  s[["closed_at"]] <- Sys.time()
  .state[["last_session"]] <- s
  unlink(s[["root"]], recursive = TRUE, force = TRUE)
  invisible(TRUE)
}


## 'session' when given, else the current session, else the last closed one
## (what starburst_cost() and starburst_timeline() report on)
session_or_last <- function(session) {
  s <- session %||% current_session() %||% .state[["last_session"]]
  if (is.null(s)) {
    starburst_abort("No starburst session has run in this R session yet: set plan(starburst) and resolve some futures first.",
                    class = "starburst_no_session")
  }
  if (!inherits(s, "StarburstSession")) {
    invalid_argument("Argument 'session' must be a StarburstSession or NULL, not %s", deparse_short(s))
  }
  s
}


#' @export
print.StarburstSession <- function(x, ...) {
  cat(sprintf("StarburstSession #%d (%s, %d workers)%s\n", x[["id"]], x[["config"]][["backend"]],
              x[["config"]][["workers"]], if (isTRUE(x[["closed"]])) " [closed]" else ""))
  invisible(x)
}


session_info <- function(s) {
  if (is.null(s) || isTRUE(s[["closed"]])) return(NULL)
  sb_session_info(s[["ptr"]])
}


## Number of futures submitted to a session whose results R has not collected
session_active_count <- function(s) {
  if (is.null(s) || isTRUE(s[["closed"]])) return(0L)
  length(ls(s[["tasks"]], all.names = TRUE))
}


## Consumes the final report of cancelled tasks, so the engine can forget them
session_drain <- function(s) {
  ids <- s[["draining"]]
  if (length(ids) == 0L || isTRUE(s[["closed"]])) return(invisible())
  keep <- vapply(ids, FUN.VALUE = NA, FUN = function(id) {
    res <- tryCatch(sb_collect(s[["ptr"]], id, 0), error = function(e) NULL)
    !is.null(res) && res[["state"]] %in% c("queued", "running")
  })
  if (any(!keep)) tryCatch(sb_release(s[["ptr"]], ids[!keep]), error = function(e) NULL)
  s[["draining"]] <- ids[keep]
  invisible()
}


## --------------------------------------------------------------------
## Clean-up when the plan changes
## --------------------------------------------------------------------

## future (< 1.40.0): register a stand-in cluster in future's cluster
## registry, whose stopCluster() method closes this session. future's plan()
## stops that cluster whenever the plan changes.
register_plan_cleanup <- function(s) {
  if (use_backend_api()) return(invisible(FALSE))
  registry <- get0("ClusterRegistry", envir = asNamespace("future"), mode = "function", inherits = FALSE)
  if (!is.function(registry)) return(invisible(FALSE))
  node <- structure(list(session = s), class = "starburst_node")
  cl <- structure(list(node), class = c("starburst_cluster", "cluster"))
  ## 'workers' identifies the registered cluster; a new value replaces
  ## (and thereby stops) the previously registered one, which must not close
  ## a retired session whose futures still run
  .state[["registering"]] <- TRUE
  on.exit(.state[["registering"]] <- FALSE)
  tryCatch({
    registry("start", workers = -s[["id"]], makeCluster = function(workers, ...) cl)
  }, error = function(e) NULL)
  invisible(TRUE)
}

#' @importFrom parallel stopCluster
#' @export
stopCluster.starburst_cluster <- function(cl = NULL) {
  replacing <- isTRUE(.state[["registering"]])
  for (node in cl) {
    s <- node[["session"]]
    if (is.null(s) || (replacing && isTRUE(s[["retiring"]]))) next
    session_close(s, reason = "the future plan was changed")
  }
  if (!replacing) close_retired("the future plan was changed")
  invisible(NULL)
}

#' @export
print.starburst_cluster <- function(x, ...) {
  cat("starburst session stand-in for future's cluster registry\n")
  invisible(x)
}


## A top-level task callback: closes the session as soon as the current
## plan no longer uses starburst
install_task_callback <- function() {
  if (isTRUE(.state[["callback"]])) return(invisible(FALSE))
  addTaskCallback(function(expr, value, ok, visible) {
    tryCatch(close_if_unplanned(), error = function(e) NULL)
    TRUE
  }, name = "starburst-session-guard")
  .state[["callback"]] <- TRUE
  invisible(TRUE)
}

remove_task_callback <- function() {
  if (!isTRUE(.state[["callback"]])) return(invisible(FALSE))
  try(removeTaskCallback("starburst-session-guard"), silent = TRUE)
  .state[["callback"]] <- FALSE
  invisible(TRUE)
}

close_if_unplanned <- function() {
  s <- current_session()
  if (is.null(s) && length(.state[["retired"]]) == 0L) return(invisible(FALSE))
  if (plan_uses_starburst()) return(invisible(FALSE))
  close_retired("the future plan was changed")
  session_close(s, reason = "the future plan was changed")
}

plan_uses_starburst <- function() {
  strategy <- future::plan("next")
  inherits(strategy, "starburst")
}


## --------------------------------------------------------------------
## Collecting task outcomes
## --------------------------------------------------------------------

future_label <- function(future) {
  label <- future[["label"]]
  if (is.null(label) || is.na(label)) "<none>" else sQuote(label)
}


## Asks the engine about a future's task, waiting at most 'timeout' seconds.
## Relays immediate conditions that arrived. Returns TRUE if the future is
## resolved (its 'result' field set), otherwise FALSE.
collect_future <- function(future, timeout = 0) {
  if (!is.null(future[["result"]])) return(TRUE)
  s <- future[["sb_session"]]
  id <- future[["sb_task"]]
  if (is.null(s) || is.null(id)) {
    stop(future::FutureError(sprintf("Future (%s) of class %s was never submitted to a starburst session",
                                     future_label(future), class(future)[1]), future = future))
  }
  if (isTRUE(s[["closed"]])) {
    ## session_close() sets the result of the futures it still tracked
    if (is.null(future[["result"]])) {
      future[["result"]] <- StarburstFutureError(
        sprintf("Future (%s) of class %s was not resolved: its starburst session was closed.",
                future_label(future), class(future)[1]),
        classes = "starburst_session_closed", future = future)
      future[["state"]] <- "failed"
    }
    return(TRUE)
  }

  if (timeout > 0) show_start_progress(s)
  res <- sb_collect(s[["ptr"]], id, timeout)
  state <- res[["state"]]
  final <- state %in% c("done", "failed", "cancelled")

  ## Record the outcome *before* relaying conditions (a condition handler may
  ## throw), and only then let the engine forget it: the engine reports a
  ## final outcome again until it is released, so an interrupt (Ctrl-C,
  ## setTimeLimit()) before the outcome is recorded loses nothing
  if (final) {
    ## Which worker ran it, and in which session: for starburst_logs(future)
    future[["starburst_worker"]] <- res[["worker"]]
    future[["starburst_session"]] <- s
    record_outcome(future, res)
    if (exists(id, envir = s[["tasks"]], inherits = FALSE)) rm(list = id, envir = s[["tasks"]])
    sb_release(s[["ptr"]], id)
    count_finished(future)
  }

  relay_notices(res[["notices"]])
  relay_events(future, res[["events"]])

  ## A retired session ends with its last collected future
  if (final && isTRUE(s[["retiring"]]) && session_active_count(s) == 0L) {
    session_close(s, reason = "its configuration was replaced")
    .state[["retired"]] <- Filter(function(r) !isTRUE(r[["closed"]]), .state[["retired"]])
  }

  if (length(s[["draining"]]) > 0L) session_drain(s)

  final
}


record_outcome <- function(future, res) {
  state <- res[["state"]]
  if (state == "done") {
    value <- tryCatch(unserialize(res[["value"]]), error = function(e) {
      structure(class = c("starburst_unreadable_result", "error", "condition"),
                list(message = conditionMessage(e), call = NULL))
    })
    if (inherits(value, "starburst_unreadable_result")) {
      future[["result"]] <- StarburstFutureError(
        sprintf("The result of future (%s) of class %s could not be read in this R session: %s",
                future_label(future), class(future)[1], conditionMessage(value)),
        classes = "starburst_unreadable_result", future = future)
      future[["state"]] <- "failed"
    } else if (inherits(value, "FutureResult")) {
      future[["result"]] <- value
      future[["state"]] <- "finished"
    } else if (inherits(value, "FutureError")) {
      ## e.g. a FutureLaunchError from future:::evalFuture()
      future[["result"]] <- value
      future[["state"]] <- "failed"
    } else if (inherits(value, "error")) {
      own <- grep("^starburst_", class(value), value = TRUE)
      future[["result"]] <- StarburstFutureError(
        sprintf("Future (%s) of class %s could not be evaluated by its R worker process: %s",
                future_label(future), class(future)[1], conditionMessage(value)),
        classes = c(own, "starburst_evaluation_error"), future = future)
      future[["state"]] <- "failed"
    } else {
      future[["result"]] <- StarburstFutureError(
        sprintf("Future (%s) of class %s received an unexpected result of class %s from its R worker process",
                future_label(future), class(future)[1], sQuote(class(value)[1])),
        classes = "starburst_protocol_error", future = future)
      future[["state"]] <- "failed"
    }
  } else if (state == "failed") {
    err <- res[["error"]]
    classes <- failure_class(err[["cause"]])
    message <- as.character(err[["message"]])
    if (length(message) == 0L) message <- "the task failed"
    future[["result"]] <- StarburstFutureError(
      sprintf("Future (%s) of class %s failed: %s", future_label(future), class(future)[1],
              paste(message, collapse = " ")),
      classes = classes, log_tail = as.character(err[["log_tail"]]), future = future)
    future[["state"]] <- "failed"
  } else if (state == "cancelled") {
    future[["result"]] <- future_interrupt_error(
      sprintf("Future (%s) of class %s was cancelled while being evaluated", future_label(future), class(future)[1]),
      future = future)
    future[["state"]] <- "interrupted"
  }
  invisible(future)
}


## Messages of the engine for the user while R waits (a failure that
## persists, and when it passes): conditions of class starburst_notice
relay_notices <- function(notices) {
  for (n in as.character(notices)) {
    message(structure(class = c("starburst_notice", "message", "condition"),
                      list(message = paste0(n, "\n"), call = NULL)))
  }
  invisible()
}


## Keeps the statistics of a FutureBackend (future >= 1.40.0), which
## print(plan("backend")) shows
count_launched <- function(future) {
  backend <- future[["backend"]]
  counters <- if (is.environment(backend)) backend[["counters"]] else NULL
  if (is.null(counters) || !"launched" %in% names(counters)) return(invisible())
  counters["launched"] <- counters["launched"] + 1L
  backend[["counters"]] <- counters
  invisible()
}

count_finished <- function(future) {
  backend <- future[["backend"]]
  counters <- if (is.environment(backend)) backend[["counters"]] else NULL
  if (is.null(counters) || !"finished" %in% names(counters)) return(invisible())
  counters["finished"] <- counters["finished"] + 1L
  backend[["counters"]] <- counters
  result <- future[["result"]]
  if (inherits(result, "FutureResult") && !is.null(result[["started"]]) && !is.null(result[["finished"]])) {
    backend[["runtime"]] <- backend[["runtime"]] + (result[["finished"]] - result[["started"]])
  }
  invisible()
}


## Signals the immediate conditions (e.g. progressr updates) that the
## engine relayed from the R worker, in order. They are part of the
## future's FutureResult too, flagged as already signaled, so value() does
## not signal them a second time.
relay_events <- function(future, events) {
  for (raw in events) {
    cond <- tryCatch(unserialize(raw), error = function(e) NULL)
    if (!inherits(cond, "condition")) next
    if (inherits(cond, "error")) next
    if (inherits(cond, "warning")) {
      warning(cond)
    } else if (inherits(cond, "message")) {
      message(cond)
    } else {
      signalCondition(cond)
    }
  }
  invisible(future)
}


## Cancels the task of a running future. The future is resolved at once,
## with a FutureInterruptError; the engine's final report is drained later.
cancel_future_task <- function(future) {
  s <- future[["sb_session"]]
  id <- future[["sb_task"]]
  if (is.null(s) || is.null(id) || !is.null(future[["result"]])) return(invisible(future))
  if (!isTRUE(s[["closed"]])) {
    tryCatch(sb_cancel(s[["ptr"]], id), error = function(e) NULL)
    if (exists(id, envir = s[["tasks"]], inherits = FALSE)) rm(list = id, envir = s[["tasks"]])
    s[["draining"]] <- unique(c(s[["draining"]], id))
  }
  future[["result"]] <- future_interrupt_error(
    sprintf("Future (%s) of class %s was interrupted", future_label(future), class(future)[1]),
    future = future)
  future[["state"]] <- "interrupted"
  invisible(future)
}


## While R waits for a value on AWS and workers are still starting, a status
## line with the workers by start-up phase (at most once a second; option
## starburst.progress = FALSE turns it off)
show_start_progress <- function(s) {
  if (!identical(s[["config"]][["backend"]], "aws") || isFALSE(getOption("starburst.progress", TRUE))) {
    return(invisible(NULL))
  }
  now <- proc.time()[["elapsed"]]
  if (!is.null(s[["progress_at"]]) && now - s[["progress_at"]] < 1) return(invisible(NULL))
  s[["progress_at"]] <- now
  info <- tryCatch(session_info(s), error = function(e) NULL)
  if (is.null(info)) return(invisible(NULL))
  waiting <- info$provisioning + info$pulling + info$starting
  if (waiting == 0L) {
    if (!is.null(s[["progress_id"]])) {
      cli::cli_status_clear(s[["progress_id"]], result = "done",
                            msg_done = sprintf("starburst: %d workers ready", info$ready))
      s[["progress_id"]] <- NULL
    }
    return(invisible(NULL))
  }
  line <- sprintf("starburst: workers %d provisioning, %d pulling image, %d starting R, %d ready; %d futures queued",
                  info$provisioning, info$pulling, info$starting, info$ready, info$queued)
  if (identical(line, s[["progress_line"]])) return(invisible(NULL))
  s[["progress_line"]] <- line
  if (is.null(s[["progress_id"]])) {
    s[["progress_id"]] <- cli::cli_status(line, .auto_close = FALSE)
  } else {
    cli::cli_status_update(s[["progress_id"]], line)
  }
  invisible(NULL)
}
