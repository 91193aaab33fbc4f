## starburst_sessions(): the set-up's workers by session, and sweeping up
## after sessions that are gone

#' Workers of the AWS set-up, by session; stop those nobody will stop
#'
#' Every worker stops by itself when its R session is gone (see
#' `orphan_timeout` in [starburst()]) and by the deadline its budget allows
#' (`max_cost`). `starburst_sessions()` is the backstop and the overview: it
#' lists every running worker of the set-up's ECS cluster with the state of
#' the session that started it, read from that session's heartbeat in S3:
#' `"current"` (this R session's), `"live"` (another R session that is
#' running), `"closed"` (its session ended) or `"gone"` (no heartbeat for
#' longer than its orphan timeout plus 15 minutes), how long it has run, and
#' what it has cost so far at list prices. Opening an AWS session
#' (`plan(starburst)` then a future) stops the workers of closed and gone
#' sessions and says what they had cost.
#'
#' @param stop If `TRUE`, stop every worker of the set-up, whatever its
#'   session (other R sessions' futures on them are lost; they re-run only if
#'   those sessions are alive). Default `FALSE`: only list.
#'
#' @return A data frame with columns `worker`, `session`, `status`,
#'   `age_secs` and `cost_usd` (`NA` when the region has no prices), one row
#'   per running worker; with `stop = TRUE`, the workers that were stopped.
#'
#' @examplesIf interactive() && starburst:::has_aws_setup()
#' starburst_sessions()
#' starburst_sessions(stop = TRUE)   ## stops every worker of the set-up
#' @seealso [starburst_status()], [starburst_cost()]
#' @export
starburst_sessions <- function(stop = FALSE) {
  if (!is_flag(stop)) invalid_argument("Argument 'stop' must be TRUE or FALSE, not %s", deparse_short(stop))
  config <- resolve_config(backend = "aws", workers = 1L)
  json <- session_config_json(config, root = tempdir())
  w <- sb_setup_workers(json, stop)
  out <- data.frame(worker = as.character(w$worker), session = as.character(w$session),
                    status = as.character(w$status), age_secs = as.numeric(w$age_secs),
                    cost_usd = as.numeric(w$cost_usd), stringsAsFactors = FALSE)
  s <- current_session()
  if (!is.null(s) && nrow(out) > 0L) {
    mine <- tryCatch(session_info(s)$session_id, error = function(e) NULL)
    if (!is.null(mine)) out$status[out$session == mine] <- "current"
  }
  out
}


## After an AWS session opened: what it stopped of sessions that are gone
note_swept <- function(s) {
  if (!identical(s[["config"]][["backend"]], "aws")) return(invisible(NULL))
  swept <- tryCatch(sb_session_swept(s[["ptr"]]), error = function(e) NULL)
  if (is.null(swept)) return(invisible(NULL))
  if (swept$workers > 0L) {
    message(sprintf("starburst: stopped %d worker%s left running by sessions that are gone (they had cost $%.4f so far)",
                    swept$workers, if (swept$workers == 1L) "" else "s", swept$usd))
  }
  if (!is.null(swept$error)) {
    message(sprintf("starburst: could not look for workers of sessions that are gone: %s", swept$error))
  }
  invisible(swept)
}
