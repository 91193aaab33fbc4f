## starburst_estimate(): time a small local sample, project wall time and cost

#' Estimate the wall time and cost of a run before starting it
#'
#' Runs `.f` on a few elements of `.x` here, in this R session, times them,
#' and projects what the whole of `.x` would take on `workers` Fargate
#' workers of size `cpu`/`memory`: how many run at once (within your Fargate
#' vCPU quota when it can be read), in how many waves, the wall time, and the
#' cost on demand and with Spot, under per-second billing with a one-minute
#' minimum per worker. Nothing is launched.
#'
#' The projection assumes a worker runs a task as fast as this machine ran
#' the sample; `speed` scales that (2 = workers are twice as slow).
#'
#' @param .x The elements the run maps over (a vector or list).
#' @param .f The function applied to each element.
#' @param ... Further arguments to `.f`.
#' @param workers Workers. Default: the `workers` of [starburst_config()],
#'   else 10.
#' @param cpu,memory Worker size, as in [starburst()]. Default: the
#'   preferences, else 1 vCPU and 2 GB.
#' @param arch `"x86_64"` or `"arm64"`.
#' @param region Prices of this region. Default: the set-up's, else the
#'   `region` of [starburst_config()], else us-east-1.
#' @param sample Number of elements to time (the first ones, at most
#'   `length(.x)`).
#' @param startup Seconds a worker takes to start (image pull, R start-up).
#' @param speed Worker time per task divided by local time per task.
#' @param quota Fit `workers` into the Fargate vCPU quota (needs AWS access).
#'   Default: `TRUE` when an AWS set-up exists.
#'
#' @return An object of class `starburst_estimate`: a list with `tasks`,
#'   `workers` (used at once), `waves`, `per_task_secs`, `wall_secs`,
#'   `wall_secs_high` (with a margin for uneven task times),
#'   `vcpu_seconds`, `gb_seconds`, `cost_on_demand`, `cost_spot`,
#'   `region`, and the `sample` times.
#'
#' @examples
#' est <- starburst_estimate(1:200, function(i) { Sys.sleep(0.01); i }, workers = 20,
#'                           quota = FALSE)
#' est
#' @seealso [starburst_cost()] for what a session really cost
#' @export
starburst_estimate <- function(.x, .f, ..., workers = NULL, cpu = NULL, memory = NULL,
                               arch = NULL, region = NULL, sample = 5L, startup = 60,
                               speed = 1, quota = has_aws_setup()) {
  .f <- match.fun(.f)
  n <- length(.x)
  if (n == 0L) invalid_argument("Argument '.x' is empty: there is nothing to estimate")
  if (!is_whole_number(sample) || sample < 1) {
    invalid_argument("Argument 'sample' must be a positive whole number, not %s", deparse_short(sample))
  }
  check_seconds(startup, "startup")
  if (!is_scalar_number(speed) || speed <= 0 || speed > 1e6) {
    invalid_argument("Argument 'speed' must be a positive number (how many times faster a worker is than this machine; at most 1e6), not %s",
                     deparse_short(speed))
  }
  if (!is_flag(quota)) invalid_argument("Argument 'quota' must be TRUE or FALSE, not %s", deparse_short(quota))
  prefs <- read_preferences()
  workers <- check_workers(workers %||% prefs$workers %||% 10L)
  millicpu <- check_cpu(cpu %||% prefs$cpu %||% 1)
  memory_mib <- parse_memory(memory %||% prefs$memory %||% "2GB")
  msg <- sb_validate_size(millicpu, memory_mib)
  if (is.character(msg) && length(msg) > 0L) {
    invalid_argument("Invalid Fargate size cpu = %s, memory = %s: %s", format(millicpu / 1000),
                     format_mib(memory_mib), paste(msg, collapse = " "))
  }
  arch <- check_arch(arch %||% prefs$arch %||% "x86_64")
  target <- aws_target(region)
  region <- target$region %||% "us-east-1"

  idx <- seq_len(min(as.integer(sample), n))
  times <- vapply(idx, function(i) {
    t0 <- proc.time()[["elapsed"]]
    .f(.x[[i]], ...)
    proc.time()[["elapsed"]] - t0
  }, 0)

  concurrent <- workers
  if (quota) {
    fit <- tryCatch(sb_quota_fit(target$region, target$endpoint, "on_demand", millicpu, memory_mib, workers),
                    error = function(e) {
                      warning(sprintf("The Fargate quota could not be read (%s); assuming all %d workers fit.",
                                      conditionMessage(e), workers), call. = FALSE)
                      NULL
                    })
    if (!is.null(fit)) {
      if (!is.na(fit$quota$warning)) warning(fit$quota$warning, call. = FALSE)
      concurrent <- max(1L, as.integer(fit$concurrent))
    }
  }
  est <- sb_estimate(times * speed, n, concurrent, millicpu, memory_mib, arch, region, startup)
  est <- as.list(est)
  est$requested_workers <- workers
  est$region <- region
  est$cpu <- millicpu / 1000
  est$memory <- format_mib(memory_mib)
  est$arch <- arch
  est$sample <- times
  structure(est, class = "starburst_estimate")
}

#' @export
print.starburst_estimate <- function(x, ...) {
  cat(sprintf("starburst estimate: %d tasks on %d workers (%g vCPU, %s, %s, %s)\n",
              as.integer(x$tasks), as.integer(x$workers), x$cpu, x$memory, x$arch, x$region))
  if (x$workers < x$requested_workers) {
    cat(sprintf("  only %d of the %d workers fit in the Fargate vCPU quota\n",
                as.integer(x$workers), as.integer(x$requested_workers)))
  }
  cat(sprintf("  per task       %s (timed on %d here)\n", format_secs(x$per_task_secs), length(x$sample)))
  cat(sprintf("  waves          %d\n", as.integer(x$waves)))
  cat(sprintf("  wall time      %s (up to %s)\n", format_secs(x$wall_secs), format_secs(x$wall_secs_high)))
  cat(sprintf("  cost           %s on demand, %s with Spot (%s vCPU-s)\n", format_usd(x$cost_on_demand),
              format_usd(x$cost_spot), format(round(x$vcpu_seconds), big.mark = ",")))
  invisible(x)
}

format_secs <- function(s) {
  if (s < 1) return(sprintf("%.0f ms", s * 1000))
  if (s < 120) return(sprintf("%.1f s", s))
  if (s < 7200) return(sprintf("%.1f min", s / 60))
  sprintf("%.1f h", s / 3600)
}

## Dollars with cents, or four decimals below ten cents
format_usd <- function(usd) {
  sprintf(if (abs(usd) < 0.1) "$%.4f" else "$%.2f", usd)
}
