## starburst_cost(): what a session's workers cost (or would cost on Fargate)

#' What a starburst session costs
#'
#' Reports the spend of the current starburst session (or, after
#' `plan(sequential)`, of the last one): its workers, their billed
#' vCPU-seconds and GB-seconds and the US dollars they come to under Fargate's
#' per-second billing with a one-minute minimum per worker, from the workers'
#' real launch and stop times. On the local backend the figures are what the
#' same workers would have cost on Fargate (in the `region` of
#' [starburst_config()], else us-east-1). The prices are list prices (Linux,
#' on-demand; Spot at a typical discount) from a catalog kept with the
#' package; your bill may differ.
#'
#' @param session `NULL` (default) for the current session, else the last
#'   closed one; or a `StarburstSession`.
#'
#' @return An object of class `starburst_cost`: a list with `backend`,
#'   `region`, `workers`, `running`, `vcpu_seconds`, `gb_seconds`, `usd`,
#'   `usd_on_demand` (the same time at on-demand prices), `hourly_rate`
#'   (USD per hour of the workers running now), `max_cost`,
#'   `max_hourly_cost` (`NA` without a cap), `exceeded` (whether a cap
#'   stopped the session) and `closed`.
#'
#' @examples
#' library(future)
#' plan(starburst, workers = 2, backend = "local")
#' fs <- lapply(1:4, function(i) future(i^2))
#' y <- sapply(fs, value)
#' starburst_cost()
#' plan(sequential)
#' @seealso [starburst()] for the caps `max_cost` and `max_hourly_cost`,
#'   [starburst_config()]
#' @export
starburst_cost <- function(session = NULL) {
  s <- session_or_last(session)
  cost <- if (isTRUE(s[["closed"]])) s[["cost"]] else sb_session_cost(s[["ptr"]])
  if (is.null(cost)) {
    starburst_abort("The cost of this session is not known: its region has no prices in the catalog.",
                    class = "starburst_error")
  }
  cost <- as.list(cost)
  cost[["backend"]] <- s[["config"]][["backend"]]
  cost[["closed"]] <- isTRUE(s[["closed"]])
  cost[["session"]] <- s[["id"]]
  structure(cost, class = "starburst_cost")
}

#' @export
print.starburst_cost <- function(x, ...) {
  local <- identical(x$backend, "local")
  cat(sprintf("starburst session #%d (%s backend%s)%s\n", x$session, x$backend,
              if (local) sprintf(", priced as Fargate in %s", x$region) else sprintf(", %s", x$region),
              if (isTRUE(x$closed)) " [closed]" else ""))
  cat(sprintf("  workers        %d started, %d running\n", as.integer(x$workers), as.integer(x$running)))
  cat(sprintf("  billed         %s vCPU-s, %s GB-s\n", format(round(x$vcpu_seconds), big.mark = ","),
              format(round(x$gb_seconds), big.mark = ",")))
  cat(sprintf("  %-14s $%.4f%s\n", if (local) "would cost" else "cost", x$usd,
              if (abs(x$usd - x$usd_on_demand) > 1e-9) sprintf(" ($%.4f on demand)", x$usd_on_demand) else ""))
  if (x$running > 0) cat(sprintf("  burn rate      $%.4f per hour\n", x$hourly_rate))
  usd <- function(v) paste0("$", format(v, nsmall = 2, digits = 3, scientific = FALSE))
  caps <- c(if (!is.na(x$max_cost)) sprintf("%s per session", usd(x$max_cost)),
            if (!is.na(x$max_hourly_cost)) sprintf("%s per hour", usd(x$max_hourly_cost)))
  if (length(caps) > 0L) {
    cat(sprintf("  caps           %s%s\n", paste(caps, collapse = ", "),
                if (isTRUE(x$exceeded)) " -- reached: pending futures failed" else ""))
  }
  invisible(x)
}
