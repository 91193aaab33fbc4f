## Fargate vCPU quotas: status, fitting workers into them, increase requests

aws_target <- function(region = NULL) {
  setup <- if (has_aws_setup()) {
    tryCatch(jsonlite::fromJSON(aws_setup_file(), simplifyVector = FALSE), error = function(e) NULL)
  }
  list(region = check_region(region %||% setup$region %||% preference("region"), null_ok = TRUE),
       endpoint = setup$endpoint_url)
}

quota_history_file <- function() {
  path <- Sys.getenv("STARBURST_QUOTA_HISTORY", "")
  if (nzchar(path)) return(path)
  file.path(tools::R_user_dir("starburst", which = "data"), "quota-requests.json")
}

quota_codes <- c(on_demand = "L-3032A538", spot = "L-36FBB829")


#' Fargate vCPU quotas and how much of them is in use
#'
#' Shows, for the Fargate On-Demand vCPU quota (`L-3032A538`) and the Fargate
#' Spot vCPU quota (`L-36FBB829`) of the region, the value applied to your
#' account, the AWS default, the vCPUs your running tasks use now and the
#' headroom left. Workers of `plan(starburst)` beyond the headroom wait and
#' run as later waves through the same pool of workers. When Service Quotas
#' cannot answer (no permission, throttling), the default value is used and a
#' warning says why.
#'
#' @param region AWS region. Default: the set-up's, else the `region` of
#'   [starburst_config()], else the AWS chain's.
#'
#' @return A data frame of class `starburst_quota_status` with columns
#'   `quota`, `code`, `applied`, `default`, `usage`, `headroom`.
#'
#' @examples
#' \dontrun{
#' starburst_quota_status()
#' }
#' @seealso [starburst_request_quota_increase()]
#' @export
starburst_quota_status <- function(region = NULL) {
  target <- aws_target(region)
  all <- sb_quota_status(target$region, target$endpoint)
  warnings <- unlist(lapply(all, function(q) q$warning))
  for (w in warnings[!is.na(warnings)]) warning(w, call. = FALSE)
  out <- data.frame(
    quota = vapply(all, function(q) q$name, ""),
    code = vapply(all, function(q) q$code, ""),
    applied = vapply(all, function(q) q$applied, 0),
    default = vapply(all, function(q) q$default, 0),
    usage = vapply(all, function(q) q$usage, 0),
    headroom = vapply(all, function(q) q$headroom, 0),
    stringsAsFactors = FALSE
  )
  structure(out, class = c("starburst_quota_status", "data.frame"))
}

#' @export
print.starburst_quota_status <- function(x, ...) {
  cat("Fargate vCPU quotas\n")
  for (i in seq_len(nrow(x))) {
    cat(sprintf("  %-26s %s  applied %s, default %g, in use %g, headroom %g vCPU\n",
                x$quota[i], x$code[i], if (is.na(x$applied[i])) "unknown" else format(x$applied[i]),
                x$default[i], x$usage[i], x$headroom[i]))
  }
  invisible(x)
}


#' Ask AWS for a higher Fargate vCPU quota
#'
#' Files a Service Quotas increase request for the Fargate On-Demand (or,
#' with `spot = TRUE`, Spot) vCPU quota and records it in a history file
#' (`quota-requests.json` under `tools::R_user_dir("starburst", "data")`),
#' so [starburst_check_quota_request()] can follow it. An open request that
#' already asks for at least `vcpus` is returned instead of filing another.
#'
#' @param vcpus The quota value to ask for, in vCPUs (for 100 workers of
#'   1 vCPU: 100).
#' @param spot Ask for the Spot quota instead of the On-Demand one.
#' @param region AWS region; see [starburst_quota_status()].
#'
#' @return Invisibly, the request: a list with `id`, `code`, `desired`,
#'   `state` and `created`.
#'
#' @examples
#' \dontrun{
#' starburst_request_quota_increase(200)
#' }
#' @export
starburst_request_quota_increase <- function(vcpus, spot = FALSE, region = NULL) {
  if (!is_scalar_number(vcpus) || vcpus <= 0) {
    invalid_argument("Argument 'vcpus' must be a positive number of vCPUs, not %s", deparse_short(vcpus))
  }
  check_spot(spot)
  target <- aws_target(region)
  code <- quota_codes[[if (spot) "spot" else "on_demand"]]
  history <- quota_history_file()
  dir.create(dirname(history), recursive = TRUE, showWarnings = FALSE)
  req <- sb_quota_request(target$region, target$endpoint, code, vcpus, history)
  message(sprintf("starburst: quota request %s for %g vCPU (%s) is %s; follow it with starburst_check_quota_request().",
                  req$id, req$desired, code, tolower(req$state)))
  invisible(as_quota_request(req))
}

#' Follow Fargate quota increase requests
#'
#' Asks Service Quotas for the state of the open requests in the history
#' that [starburst_request_quota_increase()] keeps, records the answers, and
#' shows every request made from this machine.
#'
#' @param id A request id to show only that request; `NULL` for all.
#' @param region AWS region; see [starburst_quota_status()].
#'
#' @return A data frame with columns `id`, `code`, `desired`, `state`,
#'   `created` (`POSIXct`).
#'
#' @examples
#' \dontrun{
#' starburst_check_quota_request()
#' }
#' @export
starburst_check_quota_request <- function(id = NULL, region = NULL) {
  if (!is.null(id)) check_string(id, "id")
  target <- aws_target(region)
  history <- quota_history_file()
  if (!file.exists(history)) {
    return(as_quota_requests(list()))
  }
  res <- sb_quota_refresh(target$region, target$endpoint, history)
  for (w in res$warnings) warning(w, call. = FALSE)
  out <- as_quota_requests(res$requests)
  if (!is.null(id)) {
    out <- out[out$id == id, , drop = FALSE]
    if (nrow(out) == 0L) {
      invalid_argument("No quota request %s was made from this machine (history: %s)", sQuote(id), history)
    }
  }
  out
}

as_quota_request <- function(r) {
  r$created <- as.POSIXct(r$created, origin = "1970-01-01")
  r$state <- tolower(gsub("([a-z])([A-Z])", "\\1_\\2", r$state))
  r
}

as_quota_requests <- function(requests) {
  requests <- lapply(requests, as_quota_request)
  data.frame(
    id = vapply(requests, function(r) r$id, ""),
    code = vapply(requests, function(r) r$code, ""),
    desired = vapply(requests, function(r) r$desired, 0),
    state = vapply(requests, function(r) r$state, ""),
    created = as.POSIXct(vapply(requests, function(r) as.numeric(r$created), 0), origin = "1970-01-01"),
    stringsAsFactors = FALSE
  )
}


## How many of the session's workers fit in its quota; told once per session
## and used to keep the engine inside it
fit_workers_in_quota <- function(config) {
  aws <- config[["aws"]]
  fit <- tryCatch(
    sb_quota_fit(aws$region, aws$endpoint_url, if (isTRUE(config$spot)) "spot" else "on_demand",
                 config$millicpu, config$memory_mib, config$workers),
    error = function(e) NULL
  )
  if (is.null(fit)) return(config$workers)
  q <- fit$quota
  if (!is.na(q$warning)) warning(q$warning, call. = FALSE)
  concurrent <- as.integer(fit$concurrent)
  if (isTRUE(fit$quota_bound)) {
    message(sprintf(paste0(
      "starburst: %d of the %d workers (%g vCPU each) fit in your %s quota (%g vCPU, %g in use): ",
      "futures run %d at a time, the rest in later waves.%s"),
      concurrent, config$workers, config$millicpu / 1000, q$name, q$applied %|NA|% q$default, q$usage,
      concurrent,
      if (!is.na(fit$suggested)) sprintf(" For all at once, starburst_request_quota_increase(%g%s).",
                                         fit$suggested, if (isTRUE(config$spot)) ", spot = TRUE" else "") else ""))
  }
  if (concurrent < 1L) {
    starburst_abort(sprintf("No worker of %g vCPU fits in your %s quota now (%g vCPU, %g in use). Wait for running tasks to end, use smaller workers (cpu =), or ask for more with starburst_request_quota_increase().",
                            config$millicpu / 1000, q$name, q$applied %|NA|% q$default, q$usage),
                    class = "starburst_quota_exceeded")
  }
  concurrent
}

`%|NA|%` <- function(x, y) if (is.null(x) || is.na(x)) y else x
