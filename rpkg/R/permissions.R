## The permissions pre-flight: may the AWS identity in use do what set-up,
## sessions, environment images, quotas and teardown need? Rust lists the
## permissions (crates/starburst-provision/src/permissions.rs) and asks IAM's
## policy simulator (sb_check_permissions()); R shows the answer.

#' Check that your AWS identity may set up and use starburst
#'
#' Asks AWS, before anything is created, whether the AWS identity R finds
#' (the standard chain: environment variables, `~/.aws` profiles, SSO,
#' instance roles) may do everything [starburst_setup()], sessions,
#' environment images, quota requests and [starburst_teardown()] need, each
#' action scoped to the set-up's resources (its bucket, repository, cluster,
#' log group, security group and roles). It prints how many of them are
#' allowed, the missing ones with why each is needed, and the IAM policy
#' document that grants what is missing (two or more when that does not fit in
#' one managed policy, as with `cloud_builder = TRUE` and nothing allowed):
#' hand it to an administrator (it is also in the result's `policy`). `starburst_setup()` runs the same check
#' before it creates anything.
#'
#' The check uses IAM's policy simulator on your IAM user, or on the role of
#' an assumed-role session (SSO, instance and task roles): it needs
#' `iam:SimulatePrincipalPolicy` on yourself (and `iam:GetRole` on your role,
#' for its path). Where the simulator cannot be asked (the account's root
#' user, federated users, or no right to call it), a few read-only calls are
#' tried instead: they show whether those reads are allowed, never whether a
#' write is, so the rest is reported as unknown and the policy lists
#' everything. The simulator sees your identity's own policies (and a
#' permissions boundary), not service control policies or bucket policies
#' that may still refuse a call.
#'
#' @param region AWS region, e.g. `"us-east-1"`. Default: the `region` of
#'   [starburst_config()], else the AWS chain's (`AWS_REGION`, profile).
#' @param name Name of the set-up, as given to [starburst_setup()]. Default:
#'   `"starburst"`.
#' @param prefix Key prefix of session data in the bucket, as given to
#'   [starburst_setup()].
#' @param bucket Bucket name, when [starburst_setup()] was given one.
#' @param vpc VPC id, when [starburst_setup()] was given one.
#' @param quiet Do not print the summary. Default: `FALSE`.
#' @param cloud_builder Also check what `starburst_setup(cloud_builder =
#'   TRUE)` and its image builds need (CodeBuild, and passing the builder's
#'   role to CodeBuild). Default: `FALSE`.
#'
#' @return Invisibly, an object of class `starburst_permissions`: a list with
#'   `caller` (your identity's ARN), `principal` (the IAM user or role whose
#'   policies were simulated, or `NULL`), `simulated` (`TRUE` when IAM's
#'   simulator answered, `FALSE` when only probes could), `note` (why it could
#'   not simulate), `permissions` (a data frame: `action`, `resource`,
#'   `condition`, `why`, `status`, `detail`; `status` is one of `allowed`,
#'   `explicit_deny`, `implicit_deny`, `probed_allowed`, `probed_denied`,
#'   `unknown`), `missing` (the rows known to be refused) and `policy` (the
#'   IAM policy documents, JSON text, one per managed policy, granting every
#'   permission not known to be allowed; `NULL` when there is none).
#'
#' @examplesIf interactive()
#' check <- starburst_check_permissions(region = "us-east-1")
#' check$missing
#' cat(check$policy)
#' @seealso [starburst_setup()]
#' @export
starburst_check_permissions <- function(region = NULL, name = "starburst", prefix = "starburst",
                                        bucket = NULL, vpc = NULL, quiet = FALSE,
                                        cloud_builder = FALSE) {
  region <- check_region(region %||% preference("region"), null_ok = TRUE)
  check_string(name, "name")
  check_string(prefix, "prefix")
  if (!is.null(bucket)) check_string(bucket, "bucket")
  if (!is.null(vpc)) check_string(vpc, "vpc")
  if (!is_flag(quiet)) {
    invalid_argument("Argument 'quiet' must be TRUE or FALSE, not %s", deparse_short(quiet))
  }
  if (!is_flag(cloud_builder)) {
    invalid_argument("Argument 'cloud_builder' must be TRUE or FALSE, not %s", deparse_short(cloud_builder))
  }
  check <- permissions_check(setup_options(name = name, prefix = prefix, bucket = bucket, vpc = vpc,
                                           cloud_builder = cloud_builder),
                             region)
  if (!quiet) message(paste(format(check), collapse = "\n"))
  invisible(check)
}

## The check for set-up options (a list as setup_options() makes), as a
## `starburst_permissions` object
permissions_check <- function(options, region) {
  json <- sb_check_permissions(to_json(options), region, NULL)
  out <- jsonlite::fromJSON(json, simplifyVector = FALSE)
  field <- function(name) {
    vapply(out$checks, function(c) if (is.null(c[[name]])) NA_character_ else c[[name]], "")
  }
  table <- data.frame(
    action = field("action"), resource = field("resource"), condition = field("condition"),
    why = field("why"), status = field("verdict"), detail = field("detail"),
    stringsAsFactors = FALSE
  )
  structure(
    list(caller = out$caller, principal = out$principal, simulated = isTRUE(out$simulated),
         note = out$note, permissions = table,
         missing = table[table$status %in% denied_statuses, , drop = FALSE],
         policy = if (!is.null(out$policy)) unlist(out$policy)),
    class = "starburst_permissions"
  )
}

denied_statuses <- c("explicit_deny", "implicit_deny", "probed_denied")
allowed_statuses <- c("allowed", "probed_allowed")

#' @export
format.starburst_permissions <- function(x, ...) {
  p <- x$permissions
  n_allowed <- sum(p$status %in% allowed_statuses)
  lines <- sprintf("starburst: AWS permissions of %s", x$caller)
  if (x$simulated) {
    lines <- c(lines, sprintf("  %d of %d permissions allowed (IAM's policy simulator on %s).",
                              n_allowed, nrow(p), x$principal))
  } else {
    lines <- c(lines,
      sprintf("  Could not simulate the policies: %s.", x$note),
      sprintf("  Read-only probes: %d of %d permissions allowed, %d refused; the other %d are unknown.",
              n_allowed, nrow(p), nrow(x$missing), nrow(p) - n_allowed - nrow(x$missing)))
  }
  if (nrow(x$missing) > 0L) {
    lines <- c(lines, "  Missing:")
    for (i in seq_len(nrow(x$missing))) {
      m <- x$missing[i, ]
      lines <- c(lines, sprintf("    %s on %s%s: %s", m$action, m$resource,
                                if (is.na(m$condition)) "" else sprintf(" (when %s)", m$condition),
                                m$why))
    }
  }
  if (!is.null(x$policy)) {
    n <- length(x$policy)
    what <- if (n == 1L) "An IAM policy" else sprintf("%d IAM policies (more than one managed policy holds)", n)
    lines <- c(lines,
      if (x$simulated) {
        sprintf("  %s granting what is missing, for an administrator to attach to you (also in $policy):", what)
      } else {
        sprintf("  %s granting everything not known to be allowed, for an administrator to attach to you (also in $policy):", what)
      },
      x$policy)
  } else {
    lines <- c(lines, "  Nothing is missing.")
  }
  lines
}

#' @export
print.starburst_permissions <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

## starburst_setup()'s pre-flight: stops with class
## `starburst_permissions_missing` when something is known to be refused,
## says so and goes on when only probes were possible
preflight_permissions <- function(options, region) {
  check <- permissions_check(options, region)
  if (nrow(check$missing) > 0L) {
    ## One file per managed policy
    path <- file.path(tempdir(), sprintf("starburst-policy-%s%s.json", options$name,
                                         c("", sprintf("-%d", seq_along(check$policy)[-1L]))))
    for (i in seq_along(path)) writeLines(check$policy[[i]], path[[i]])
    m <- check$missing
    what <- sprintf("  %s on %s%s", m$action, m$resource,
                    ifelse(is.na(m$condition), "", sprintf(" (when %s)", m$condition)))
    starburst_abort(
      paste(c(
        sprintf("starburst_setup() created nothing: the AWS identity %s lacks %d permission%s that set-up and sessions need:",
                check$caller, nrow(m), if (nrow(m) == 1L) "" else "s"),
        what,
        sprintf("The IAM %s granting them (and %s) %s in %s and in this error's $policy; ask an administrator to attach %s to you, then run starburst_setup() again. starburst_check_permissions() shows the details.",
                if (length(path) == 1L) "policy" else "policies",
                if (check$simulated) "nothing else" else "everything not known to be allowed",
                if (length(path) == 1L) "is" else "are", paste(path, collapse = " and "),
                if (length(path) == 1L) "it" else "them")
      ), collapse = "\n"),
      class = c("starburst_permissions_missing", "starburst_setup_failed"),
      policy = check$policy, policy_file = path, permissions = check
    )
  }
  if (!check$simulated) {
    message(sprintf("starburst: could not check every AWS permission before set-up (%s); the read-only probes found nothing missing, so set-up goes on. starburst_check_permissions() prints the policy it needs.",
                    check$note))
  }
  invisible(check)
}
