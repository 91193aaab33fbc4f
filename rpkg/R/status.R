## starburst_status(): one look at configuration, set-up, session, spend, quota

#' What starburst is doing, and what it can use
#'
#' Shows, in one place: the configuration (preferences, the AWS set-up file),
#' the health of the set-up's AWS resources (each of the seven found with the
#' set-up's tag, or missing), the active session (backend, workers by state
#' and by start-up phase: provisioning, pulling the image, starting R, ready;
#' queued futures), its spend so far, and the Fargate vCPU quota headroom.
#' AWS is only asked when an AWS set-up exists; what cannot be read is shown
#' as such rather than failing.
#'
#' @param aws Look up the set-up's resources and the quotas on AWS. Default:
#'   `TRUE` when an AWS set-up exists.
#'
#' @return An object of class `starburst_status` (printed at the console): a list with
#'   `preferences`, `setup` (the set-up file's settings or `NULL`),
#'   `resources` (data frame `kind`, `name`, `found`), `session` (the active
#'   session's counts or `NULL`), `cost` ([starburst_cost()] or `NULL`),
#'   `workers` (the set-up's running workers by session,
#'   [starburst_sessions()], or `NULL`) and `quotas`
#'   ([starburst_quota_status()] or `NULL`); printed as a report.
#'
#' @examples
#' starburst_status(aws = FALSE)
#' @export
starburst_status <- function(aws = has_aws_setup()) {
  if (!is_flag(aws)) invalid_argument("Argument 'aws' must be TRUE or FALSE, not %s", deparse_short(aws))
  out <- list(preferences = tryCatch(starburst_config(), error = function(e) conditionMessage(e)),
              setup_file = aws_setup_file(), setup = NULL, resources = NULL,
              session = NULL, cost = NULL, workers = NULL, quotas = NULL,
              problems = character(0L))
  if (has_aws_setup()) {
    out$setup <- tryCatch(read_aws_setup(), error = function(e) {
      out$problems <<- c(out$problems, conditionMessage(e))
      NULL
    })
  }
  if (aws && !is.null(out$setup)) {
    s <- out$setup
    if (!is.null(s$setup_id)) {
      found <- tryCatch(jsonlite::fromJSON(sb_teardown_plan(s$setup_id, s$region, s$endpoint_url),
                                           simplifyVector = FALSE),
                        error = function(e) {
                          out$problems <<- c(out$problems, sprintf("set-up resources: %s", conditionMessage(e)))
                          NULL
                        })
      if (!is.null(found)) {
        expected <- data.frame(
          kind = c("S3 bucket", "ECR repository", "ECS cluster", "log group", "security group", "IAM role", "IAM role"),
          name = c(s$bucket, sub("^[^/]*/", "", s$repository %||% ""), s$cluster, s$log_group %||% "",
                   "", basename(s$execution_role_arn %||% ""), basename(s$task_role_arn %||% "")),
          stringsAsFactors = FALSE)
        have <- vapply(found, function(r) paste(kind_label(r$kind), r$name), "")
        group <- Filter(function(r) identical(r$kind, "SecurityGroup"), found)
        if (length(group) > 0L) expected$name[5] <- group[[1]]$name
        expected$found <- paste(expected$kind, expected$name) %in% have
        out$resources <- expected
      }
    }
    out$workers <- tryCatch(starburst_sessions(), error = function(e) {
      out$problems <<- c(out$problems, sprintf("workers: %s", conditionMessage(e)))
      NULL
    })
    out$quotas <- tryCatch(suppressWarnings(starburst_quota_status(s$region)), error = function(e) {
      out$problems <<- c(out$problems, sprintf("quotas: %s", conditionMessage(e)))
      NULL
    })
  }
  session <- current_session()
  if (!is.null(session)) {
    out$session <- c(session_info(session), list(number = session[["id"]]))
  }
  if (!is.null(session) || !is.null(.state[["last_session"]])) {
    out$cost <- tryCatch(starburst_cost(), error = function(e) NULL)
  }
  structure(out, class = "starburst_status")
}

#' @export
print.starburst_status <- function(x, ...) {
  cat("starburst status\n")
  p <- x$preferences
  if (is.character(p)) {
    cat(sprintf("  preferences    unreadable: %s\n", p))
  } else {
    stored <- attr(p, "stored")
    cat(sprintf("  preferences    %s\n", if (length(stored) == 0L) "none (defaults)" else
      paste(sprintf("%s = %s", stored, vapply(stored, function(n) format(p[[n]]), "")), collapse = ", ")))
  }
  if (is.null(x$setup)) {
    cat(sprintf("  AWS set-up     none (%s): futures run on local workers; starburst_setup() creates one\n", x$setup_file))
  } else {
    s <- x$setup
    cat(sprintf("  AWS set-up     %s in %s (%s)\n", s$setup_id %||% "external", s$region, x$setup_file))
    cat(sprintf("  worker image   %s\n", if (nzchar(s$image %||% "")) s$image else "not built yet (built when plan() first needs it)"))
  }
  if (!is.null(x$resources)) {
    ok <- sum(x$resources$found)
    cat(sprintf("  resources      %d of %d found%s\n", ok, nrow(x$resources),
                if (ok < nrow(x$resources)) "; run starburst_setup() again to repair" else ""))
    for (i in which(!x$resources$found)) cat(sprintf("    missing: %s %s\n", x$resources$kind[i], x$resources$name[i]))
  }
  if (!is.null(x$session)) {
    s <- x$session
    cat(sprintf("  session        #%d on %s: %d of %d workers live (%d busy, %d idle), %d futures queued, %d done\n",
                s$number, s$backend, s$live, s$workers, s$busy, s$idle, s$queued, as.integer(s$completed)))
    cat(sprintf("  workers        %d provisioning, %d pulling image, %d starting R, %d ready\n",
                s$provisioning, s$pulling, s$starting, s$ready))
  } else {
    cat("  session        none active\n")
  }
  if (!is.null(x$cost)) {
    cat(sprintf("  spend          $%.4f%s (%d workers, %s vCPU-s)%s\n", x$cost$usd,
                if (identical(x$cost$backend, "local")) " if it had run on Fargate" else "",
                as.integer(x$cost$workers), format(round(x$cost$vcpu_seconds), big.mark = ","),
                if (isTRUE(x$cost$closed)) " [last session]" else ""))
  }
  if (!is.null(x$workers)) {
    w <- x$workers
    orphaned <- w$status %in% c("closed", "gone")
    cat(sprintf("  set-up workers %d running (%d of this session, %d of other live sessions)\n",
                nrow(w), sum(w$status == "current"), sum(w$status == "live")))
    if (any(orphaned)) {
      cat(sprintf("    orphaned: %d of sessions that are gone, $%.4f so far; the next session stops them, starburst_sessions(stop = TRUE) stops every worker now\n",
                  sum(orphaned), sum(w$cost_usd[orphaned], na.rm = TRUE)))
    }
  }
  if (!is.null(x$quotas)) {
    q <- x$quotas
    cat(sprintf("  quota headroom %s\n", paste(sprintf("%s %g vCPU", sub(" resource count", "", q$quota), q$headroom), collapse = ", ")))
  }
  for (p in x$problems) cat(sprintf("  problem        %s\n", p))
  invisible(x)
}
