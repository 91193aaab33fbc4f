## starburst_timeline(): what happened in a session, as tables and as a picture

#' The timeline of a starburst session
#'
#' Returns what happened in the current starburst session (or, after the plan
#' changed, in the last one): one row per future (which worker ran it, when it
#' was submitted, started and finished, how it ended and how often it was
#' re-run after a lost worker) and one row per worker (when it was launched,
#' placed by the platform, started, first seen working and stopped, why it
#' stopped and what it cost), and the session's spend over time. `plot()`
#' draws it: workers as lanes, their start-up phases shaded, futures as bars,
#' failures marked, and the spend below.
#'
#' Times of a future's run are the worker's own (when R started and finished
#' evaluating it); a future that never got a result (cancelled, or failed with
#' its worker) shows when the session saw it start and end. A worker's
#' `placed` and `running` come from the platform (ECS on AWS; a local worker
#' process starts running at once); `ready` is when the session first saw it
#' working. The spend is the Fargate price of the workers' run times (per
#' second, each worker at least a minute, which is billed at its start), as in
#' [starburst_cost()]; on the local backend it is what the run would have cost
#' on Fargate. A session keeps the history of its first 100,000 futures.
#'
#' @param session `NULL` (default) for the current session, else the last
#'   closed one; or a `StarburstSession`.
#' @param x A `starburst_timeline`.
#' @param ... Ignored.
#'
#' @return An object of class `starburst_timeline`: a list with
#'   * `futures`: a data frame with columns `future` (its label, else its
#'     task id), `task`, `worker`, `submitted`, `started`, `finished`
#'     (`POSIXct`, `NA` when not reached), `outcome` (`"done"`, `"queued"`,
#'     `"running"`, `"cancelled"`, or the cause of a failure such as
#'     `"worker_lost"` or `"evaluator_died"`) and `retries`;
#'   * `workers`: a data frame with columns `worker`, `launched`, `placed`,
#'     `running`, `ready`, `stopped` (`POSIXct`), `cause` (why it stopped)
#'     and `cost_usd`;
#'   * `cost`: a data frame with columns `time` (`POSIXct`) and `usd`, the
#'     spend at that time;
#'   * `origin` (the session's start, `POSIXct`), `duration` (seconds, to
#'     now or to the session's close), `backend`, `session` (its number),
#'     `closed` and `futures_dropped` (futures beyond the history's limit).
#'
#'   `plot()` returns `x` invisibly.
#'
#' @examples
#' library(future)
#' plan(starburst, workers = 2, backend = "local")
#' y <- future.apply::future_sapply(1:6, function(i) { Sys.sleep(0.2); i })
#' plan(sequential)
#' tl <- starburst_timeline()
#' tl
#' head(tl$futures)
#' plot(tl)
#' @seealso [starburst_cost()] for the spend, [starburst_logs()] for a
#'   worker's log, [starburst_status()] for the workers running now
#' @export
starburst_timeline <- function(session = NULL) {
  s <- session_or_last(session)
  raw <- if (isTRUE(s[["closed"]])) s[["timeline"]] else sb_session_timeline(s[["ptr"]])
  if (is.null(raw)) {
    starburst_abort("The timeline of this session is not known: it was closed before it could be read.",
                    class = "starburst_error")
  }
  timeline_from(raw, backend = s[["config"]][["backend"]], session = s[["id"]],
                closed = isTRUE(s[["closed"]]))
}

## The R view of the binding's timeline list (times in seconds from its origin)
timeline_from <- function(raw, backend, session, closed) {
  origin <- .POSIXct(raw[["origin"]])
  at <- function(secs) origin + as.numeric(secs)
  f <- raw[["futures"]]
  label <- as.character(f[["label"]])
  futures <- data.frame(
    future = ifelse(is.na(label), as.character(f[["task"]]), label),
    task = as.character(f[["task"]]),
    worker = as.character(f[["worker"]]),
    submitted = at(f[["submitted"]]),
    started = at(f[["started"]]),
    finished = at(f[["finished"]]),
    outcome = as.character(f[["outcome"]]),
    retries = as.integer(f[["retries"]]),
    stringsAsFactors = FALSE
  )
  w <- raw[["workers"]]
  workers <- data.frame(
    worker = as.character(w[["worker"]]),
    launched = at(w[["launched"]]),
    placed = at(w[["placed"]]),
    running = at(w[["running"]]),
    ready = at(w[["ready"]]),
    stopped = at(w[["stopped"]]),
    cause = as.character(w[["cause"]]),
    cost_usd = as.numeric(w[["cost_usd"]]),
    stringsAsFactors = FALSE
  )
  cost <- data.frame(time = at(raw[["cost"]][["time"]]), usd = as.numeric(raw[["cost"]][["usd"]]))
  structure(list(futures = futures, workers = workers, cost = cost, origin = origin,
                 duration = as.numeric(raw[["now"]]), backend = backend, session = session,
                 closed = closed, futures_dropped = as.numeric(raw[["futures_dropped"]])),
            class = "starburst_timeline")
}

## Seconds from the timeline's origin
timeline_secs <- function(x, t) as.numeric(difftime(t, x$origin, units = "secs"))

## Stop causes that are no failure: the worker ended by itself or on request
timeline_quiet_stop <- function(cause) {
  is.na(cause) | cause %in% c("worker exited", "worker was stopped on request")
}

#' @rdname starburst_timeline
#' @export
print.starburst_timeline <- function(x, ...) {
  f <- x$futures
  w <- x$workers
  cat(sprintf("starburst timeline, session #%d (%s backend)%s\n", x$session, x$backend,
              if (isTRUE(x$closed)) " [closed]" else ""))
  outcomes <- table(f$outcome)
  cat(sprintf("  %.1f s, %d futures on %d workers%s\n", x$duration, nrow(f), nrow(w),
              if (length(outcomes) > 0L) {
                sprintf(" (%s)", paste(sprintf("%d %s", outcomes, names(outcomes)), collapse = ", "))
              } else ""))
  secs <- function(t) timeline_secs(x, t)
  start_up <- secs(w$ready) - secs(w$launched)
  if (any(!is.na(start_up))) {
    cat(sprintf("  start-up       launch to first work: median %.1f s, max %.1f s\n",
                stats::median(start_up, na.rm = TRUE), max(start_up, na.rm = TRUE)))
  }
  run <- secs(f$finished) - secs(f$started)
  wait <- secs(f$started) - secs(f$submitted)
  if (any(!is.na(run))) {
    cat(sprintf("  futures        run median %.2f s; waited for a worker median %.2f s\n",
                stats::median(run, na.rm = TRUE), stats::median(wait, na.rm = TRUE)))
  }
  up <- sum(pmin(secs(w$stopped), x$duration, na.rm = TRUE) - secs(w$launched), na.rm = TRUE)
  if (up > 0 && any(!is.na(run))) {
    cat(sprintf("  workers        busy %.0f%% of the time they were up\n",
                100 * min(1, sum(run, na.rm = TRUE) / up)))
  }
  retried <- sum(f$retries > 0L)
  if (retried > 0L) cat(sprintf("  re-run         %d future(s) after a lost worker\n", retried))
  lost <- sum(!timeline_quiet_stop(w$cause))
  if (lost > 0L) cat(sprintf("  workers lost   %d (see the workers table's cause)\n", lost))
  if (nrow(x$cost) > 0L) {
    cat(sprintf("  %-14s $%.4f\n", if (identical(x$backend, "local")) "would cost" else "cost",
                x$cost$usd[nrow(x$cost)]))
  }
  if (x$futures_dropped > 0) {
    cat(sprintf("  (%s later futures are not in the history)\n", format(x$futures_dropped, big.mark = ",")))
  }
  invisible(x)
}

#' @rdname starburst_timeline
#' @export
plot.starburst_timeline <- function(x, ...) {
  f <- x$futures
  w <- x$workers
  n <- nrow(w)
  secs <- function(t) timeline_secs(x, t)
  end <- max(x$duration, secs(f$finished), secs(w$stopped), na.rm = TRUE)
  end <- if (is.finite(end) && end > 0) end else 1
  shown_cost <- nrow(x$cost) > 1L
  op <- graphics::par(no.readonly = TRUE)
  on.exit(graphics::par(op))
  if (shown_cost) graphics::layout(matrix(1:2), heights = c(3, 1.4))
  ## What the legend lists: only what the plot shows
  shown <- c(provisioning = FALSE, pulling = FALSE, starting = FALSE, future = FALSE,
             failed = FALSE, lost = FALSE)

  ## Workers as lanes, the first at the top
  graphics::par(mar = c(if (shown_cost) 1 else 4, 6, 4, 1))
  graphics::plot.new()
  graphics::plot.window(xlim = c(0, end), ylim = c(max(n, 1) + 0.6, 0.4), xaxs = "i")
  graphics::title(main = sprintf("starburst session #%d (%s): %d futures on %d workers",
                                 x$session, x$backend, nrow(f), n))
  phase_col <- c(provisioning = "#dde3ea", pulling = "#c2ccd8", starting = "#a3b1c2")
  outcome_col <- c(done = "#4e79a7", running = "#a0cbe8", queued = "#a0cbe8", cancelled = "#bab0ac")
  if (n > 0L) {
    y <- seq_len(n)
    launched <- secs(w$launched)
    stopped <- pmin(secs(w$stopped), end, na.rm = TRUE)
    ## up to the next phase the worker reached (or its stop)
    upto <- function(...) {
      v <- cbind(...)
      apply(v, 1L, function(r) if (all(is.na(r))) NA_real_ else r[!is.na(r)][1L])
    }
    placed <- secs(w$placed)
    running <- secs(w$running)
    ready <- secs(w$ready)
    graphics::segments(launched, y, stopped, y, col = "grey55")
    h <- 0.32
    shade <- function(from, to, phase) {
      ok <- !is.na(from) & !is.na(to) & to > from
      if (any(ok)) graphics::rect(from[ok], y[ok] - h, to[ok], y[ok] + h, col = phase_col[[phase]], border = NA)
      shown[[phase]] <<- any(ok)
    }
    shade(launched, upto(placed, running, ready, stopped), "provisioning")
    shade(placed, upto(running, ready, stopped), "pulling")
    shade(running, upto(ready, stopped), "starting")
    lost <- !timeline_quiet_stop(w$cause) & !is.na(w$stopped)
    if (any(lost)) graphics::points(stopped[lost], y[lost], pch = 25, cex = 1.4, col = "#b2182b", bg = "#b2182b")
    shown[["lost"]] <- any(lost)
    graphics::axis(2, at = y, labels = sprintf("w%d", y), las = 1, tick = FALSE,
                   cex.axis = if (n > 30L) 0.6 else 1)
  }
  ## Futures as bars on their worker's lane
  lane <- match(f$worker, w$worker)
  from <- secs(f$started)
  to <- ifelse(is.na(f$finished), end, secs(f$finished))
  ok <- !is.na(lane) & !is.na(from)
  if (any(ok)) {
    failed <- !(f$outcome %in% names(outcome_col))
    col <- ifelse(failed, "#e15759", outcome_col[f$outcome])
    graphics::rect(from[ok], lane[ok] - 0.25, pmax(to[ok], from[ok]), lane[ok] + 0.25,
                   col = col[ok], border = ifelse(f$retries[ok] > 0L, "#f28e2b", "white"),
                   lwd = ifelse(f$retries[ok] > 0L, 2, 0.5))
    bad <- ok & failed
    if (any(bad)) graphics::points(to[bad], lane[bad], pch = 4, lwd = 2, col = "#b2182b")
    shown[["future"]] <- any(ok & !failed)
    shown[["failed"]] <- any(bad)
  }
  if (!shown_cost) graphics::axis(1)
  graphics::box(col = "grey70")
  if (any(shown)) {
    graphics::legend("bottom", horiz = TRUE, bty = "n", xpd = TRUE, inset = c(0, 1), cex = 0.75,
                     fill = c(phase_col, outcome_col[["done"]], "#e15759", NA)[shown],
                     border = NA, pch = c(NA, NA, NA, NA, NA, 25)[shown],
                     col = c(rep(NA, 5), "#b2182b")[shown], pt.bg = "#b2182b",
                     legend = c("provisioning", "image pull", "R starting", "future",
                                "failed future", "lost worker")[shown])
  }

  ## The spend below, on the same time axis
  if (shown_cost) {
    graphics::par(mar = c(4, 6, 0.5, 1))
    t <- secs(x$cost$time)
    top <- max(x$cost$usd, 1e-6)
    graphics::plot(t, x$cost$usd, type = "l", lwd = 2, col = "#59a14f", xlim = c(0, end),
                   xaxs = "i", ylim = c(0, top), yaxt = "n", xlab = "seconds since the session started",
                   ylab = "")
    graphics::axis(2, at = c(0, top), labels = c("$0", sprintf("$%.4g", top)), las = 1, cex.axis = 0.8)
    graphics::mtext(if (identical(x$backend, "local")) "spend (as Fargate)" else "spend",
                    side = 2, line = 4.5, cex = 0.8)
  } else {
    graphics::title(xlab = "seconds since the session started")
  }
  invisible(x)
}
