## The one-time AWS set-up and its teardown. R checks the arguments, shows the
## plan and asks; Rust (sb_setup_plan(), sb_setup_apply(), sb_teardown*())
## does the work through the AWS SDK.

#' Create the AWS resources starburst needs
#'
#' Run once per AWS account and region. `starburst_setup()` shows what it
#' will create, asks before acting (when `confirm` is `TRUE`), creates the
#' resources, and writes the set-up file that `plan(starburst)` reads
#' (`config.json` under `tools::R_user_dir("starburst", "config")`, or the
#' file named by the environment variable `STARBURST_CONFIG`).
#'
#' It creates, each tagged `starburst:managed = true` and
#' `starburst:setup = <name>-<region>`:
#' \itemize{
#'   \item a private S3 bucket for session data (public access blocked,
#'     default encryption, data under `prefix` deleted after
#'     `data_retention_days`);
#'   \item an ECR repository for worker images (scanned on push, the newest
#'     `keep_images` kept);
#'   \item an ECS cluster with the FARGATE and FARGATE_SPOT capacity providers;
#'   \item a CloudWatch log group for worker logs (kept `log_retention_days`);
#'   \item an egress-only security group in the default VPC (or in `vpc`),
#'     whose subnets (or `subnets`) workers use;
#'   \item the task execution role (ECS pulls the image and writes logs) and
#'     the task role (workers read and write the bucket's `prefix`, nothing
#'     else), each with a least-privilege inline policy;
#'   \item with `cloud_builder = TRUE`, an AWS CodeBuild project and its
#'     role, which build worker images in your account when this machine has
#'     neither Docker nor podman (see [starburst_rebuild_environment()]).
#' }
#'
#' Running it again changes nothing; a run that was interrupted (a network
#' error, a missing permission) resumes where it stopped when run again.
#' While idle, the set-up costs nothing but storage: S3 for session data
#' (until it expires), ECR for images, CloudWatch Logs for logs.
#'
#' Your AWS credentials come from the standard chain (environment
#' variables, `~/.aws` profiles, SSO, instance roles). They need permission
#' to create the resources above and to use them: before anything is
#' created, `starburst_setup()` checks them with
#' [starburst_check_permissions()] and, when some are missing, stops with an
#' error of class `starburst_permissions_missing` that lists them and names a
#' file holding the IAM policy that grants them (also in the error's
#' `policy`), for an administrator to attach. When IAM's policy simulator
#' cannot be asked, it says so and goes on.
#'
#' @param region AWS region, e.g. `"us-east-1"`. Default: the `region` of
#'   [starburst_config()], else the AWS chain's (`AWS_REGION`, profile).
#' @param name Name of the set-up and of its resources: 2 to 24 lower-case
#'   letters, digits or `-`, starting with a letter and ending with a letter or
#'   digit; not starting with `sg-` (security groups), `xn--`, `sthree` or
#'   `amzn-s3-demo` (S3 reserves them). Default: `"starburst"`.
#' @param prefix Key prefix of session data in the bucket.
#' @param data_retention_days Days after which session data expires. Default:
#'   the `data_retention_days` of [starburst_config()], else 7.
#' @param log_retention_days Days worker logs are kept (a CloudWatch Logs
#'   value: 1, 3, 5, 7, 14, 30, 60, 90, ...). Default: 30.
#' @param keep_images Number of worker images kept in the repository.
#' @param subnets Subnet ids for workers instead of the default VPC's (needed
#'   when the account has no default VPC).
#' @param vpc VPC id for the security group instead of the default VPC.
#' @param bucket Bucket name instead of `<name>-<account>-<region>`.
#' @param assign_public_ip Give workers a public IP address, as subnets
#'   without a NAT gateway (such as the default VPC's) need to reach S3 and
#'   ECR. Default: `TRUE`.
#' @param confirm Ask before creating anything. Default: `interactive()`.
#' @param cloud_builder Also create the CodeBuild project (and its role: read
#'   build contexts under `<prefix>/builds/` in the bucket, push to the
#'   repository, write build logs to the log group) that builds worker images
#'   in the account. Images are then built there whenever this machine has no
#'   container engine (or option `starburst.builder` is `"codebuild"`), their
#'   build log shown as it runs. Builds are billed per minute (about $0.01 a
#'   minute for the 4-vCPU x86_64 build host in us-east-1); nothing while idle.
#'   Default: `FALSE`.
#' @param check_permissions Check the AWS identity's permissions before
#'   anything is created (see [starburst_check_permissions()]). Default:
#'   `TRUE`; `FALSE` skips the check, for identities whose permissions IAM's
#'   simulator judges wrongly.
#'
#' A failed step is an error of class `starburst_setup_failed` (with
#' `starburst_conflict` when a resource of the same name exists that this
#' set-up did not create: it is never adopted or changed; with
#' `starburst_permissions_missing` when the permissions check found missing
#' permissions: nothing was created).
#'
#' @return Invisibly, an object of class `starburst_setup`: the set-up id,
#'   the set-up file, its settings and what each step did (`created`,
#'   `updated` or `unchanged`); `NULL` when the plan was declined.
#'
#' @examples
#' \dontrun{
#' starburst_setup(region = "us-east-1")
#' }
#' @seealso [starburst_check_permissions()], [starburst_teardown()], [starburst_config()]
#' @export
starburst_setup <- function(region = NULL, name = "starburst", prefix = "starburst",
                            data_retention_days = NULL, log_retention_days = 30,
                            keep_images = 20, subnets = NULL, vpc = NULL, bucket = NULL,
                            assign_public_ip = TRUE, confirm = interactive(),
                            check_permissions = TRUE, cloud_builder = FALSE) {
  region <- check_region(region %||% preference("region"), null_ok = TRUE)
  check_string(name, "name")
  check_string(prefix, "prefix")
  data_retention_days <- data_retention_days %||% preference("data_retention_days", 7L)
  for (arg in c("data_retention_days", "log_retention_days", "keep_images")) {
    value <- get(arg)
    if (!is_whole_number(value) || value < 1) {
      invalid_argument("Argument '%s' must be a positive whole number, not %s", arg, deparse_short(value))
    }
  }
  if (!is.null(subnets) && (!is.character(subnets) || anyNA(subnets) || !all(nzchar(subnets)))) {
    invalid_argument("Argument 'subnets' must be subnet ids such as \"subnet-0abc\", not %s", deparse_short(subnets))
  }
  if (!is.null(vpc)) check_string(vpc, "vpc")
  if (!is.null(bucket)) check_string(bucket, "bucket")
  if (!is_flag(assign_public_ip)) {
    invalid_argument("Argument 'assign_public_ip' must be TRUE or FALSE, not %s", deparse_short(assign_public_ip))
  }
  if (!is_flag(confirm)) {
    invalid_argument("Argument 'confirm' must be TRUE or FALSE, not %s", deparse_short(confirm))
  }

  if (!is_flag(check_permissions)) {
    invalid_argument("Argument 'check_permissions' must be TRUE or FALSE, not %s", deparse_short(check_permissions))
  }
  if (!is_flag(cloud_builder)) {
    invalid_argument("Argument 'cloud_builder' must be TRUE or FALSE, not %s", deparse_short(cloud_builder))
  }

  options <- setup_options(name = name, prefix = prefix,
                           data_retention_days = data_retention_days,
                           log_retention_days = log_retention_days, keep_images = keep_images,
                           subnets = subnets, vpc = vpc, bucket = bucket,
                           cloud_builder = cloud_builder)
  ## Before anything is looked up or created: everything missing at once,
  ## as one policy for an administrator
  if (check_permissions) preflight_permissions(options, region)
  plan_json <- sb_setup_plan(to_json(options), region, NULL)
  plan <- jsonlite::fromJSON(plan_json, simplifyVector = FALSE)
  print_setup_plan(plan)
  if (confirm && !ask_yes_no("Create these resources?")) {
    message("Nothing was created.")
    return(invisible(NULL))
  }

  ## Steps are reported once done, as messages R's handlers can catch (the
  ## engine's callback runs where suppressMessages() does not reach)
  applied <- tryCatch(
    sb_setup_apply(plan_json, NULL, assign_public_ip, function(json) NULL),
    starburst_conflict = function(e) {
      starburst_abort(sprintf("%s. To give this set-up's resources other names, pass starburst_setup(name = ...). What was made so far stays, and running starburst_setup() again resumes.",
                              conditionMessage(e)),
                      class = c("starburst_conflict", "starburst_setup_failed"))
    },
    starburst_error = function(e) {
      starburst_abort(sprintf("%s. What was made so far stays; run starburst_setup() again to resume once the cause is fixed.",
                              conditionMessage(e)),
                      class = c(setdiff(class(e), c("starburst_error", "error", "condition")), "starburst_setup_failed"))
    })
  done <- jsonlite::fromJSON(applied, simplifyVector = FALSE)
  for (step in done$applied) {
    message(sprintf("  %-9s %-14s %s", tolower(step$change), kind_label(step$resource$kind),
                    step$resource$name))
  }
  settings <- done$settings
  path <- aws_setup_file()
  ## An environment image built for this same set-up stays in use
  old <- tryCatch(jsonlite::fromJSON(path, simplifyVector = FALSE), error = function(e) NULL)
  if (identical(old$setup_id, settings$setup_id) && length(old$image) == 1L && nzchar(old$image)) {
    settings$image <- old$image
  }
  write_json_file(settings, path)
  message(sprintf("starburst: set-up %s is ready; its settings are in %s.", settings$setup_id, path))
  changes <- vapply(done$applied, function(a) a$change, "")
  invisible(structure(
    list(setup_id = settings$setup_id, file = path, settings = settings,
         resources = data.frame(
           kind = vapply(done$applied, function(a) kind_label(a$resource$kind), ""),
           name = vapply(done$applied, function(a) a$resource$name, ""),
           change = tolower(changes),
           stringsAsFactors = FALSE)),
    class = "starburst_setup"
  ))
}

#' @export
print.starburst_setup <- function(x, ...) {
  cat(sprintf("starburst set-up %s (%s)\n", x$setup_id, x$file))
  print(x$resources, row.names = FALSE)
  invisible(x)
}


#' Delete the AWS resources starburst_setup() created
#'
#' Finds every resource tagged with the set-up's id (`starburst:setup`),
#' shows them, asks (when `confirm` is `TRUE`), and deletes them: the ECS
#' cluster (its running workers are stopped first), the CodeBuild project
#' (when set up), the security group, the IAM roles, the log group, the ECR repository with its images and the
#' S3 bucket with all its data. Nothing without the set-up's tag is touched.
#' The set-up file is removed, so `plan(starburst)` falls back to local
#' workers until `starburst_setup()` runs again.
#'
#' @param setup_id The set-up to remove. Default: the one in the set-up
#'   file, else `"starburst-<region>"`.
#' @param region Its region. Default: the set-up file's, else the `region`
#'   of [starburst_config()], else the AWS chain's.
#' @param confirm Ask before deleting anything. Default: `interactive()`.
#'
#' @return Invisibly, a data frame of the deleted resources (`kind`,
#'   `name`); `NULL` when declined.
#'
#' @examples
#' \dontrun{
#' starburst_teardown()
#' }
#' @seealso [starburst_setup()]
#' @export
starburst_teardown <- function(setup_id = NULL, region = NULL, confirm = interactive()) {
  if (!is_flag(confirm)) {
    invalid_argument("Argument 'confirm' must be TRUE or FALSE, not %s", deparse_short(confirm))
  }
  path <- aws_setup_file()
  setup <- if (file.exists(path)) {
    tryCatch(jsonlite::fromJSON(path, simplifyVector = FALSE), error = function(e) NULL)
  }
  region <- check_region(region %||% setup$region %||% preference("region"), null_ok = TRUE)
  endpoint <- setup$endpoint_url
  if (is.null(setup_id)) setup_id <- setup$setup_id
  if (is.null(setup_id)) {
    if (is.null(region)) {
      invalid_argument("No set-up file was found (%s): pass region = the set-up's region, or setup_id =", path)
    }
    setup_id <- paste0("starburst-", region)
  }
  check_string(setup_id, "setup_id")

  doomed_json <- sb_teardown_plan(setup_id, region, endpoint)
  doomed <- jsonlite::fromJSON(doomed_json, simplifyVector = FALSE)
  table <- data.frame(
    kind = vapply(doomed, function(r) kind_label(r$kind), ""),
    name = vapply(doomed, function(r) r$name, ""),
    stringsAsFactors = FALSE
  )
  if (length(doomed) == 0L) {
    message(sprintf("starburst: nothing is tagged with set-up %s; nothing to delete.", setup_id))
  } else {
    message(sprintf("starburst will delete the %d resources of set-up %s, with all their data:",
                    length(doomed), setup_id))
    for (i in seq_len(nrow(table))) message(sprintf("  - %-14s %s", table$kind[i], table$name[i]))
    if (confirm && !ask_yes_no("Delete them?")) {
      message("Nothing was deleted.")
      return(invisible(NULL))
    }
    sb_teardown(doomed_json, region, endpoint, function(json) NULL)
    for (i in seq_len(nrow(table))) message(sprintf("  deleted   %-14s %s", table$kind[i], table$name[i]))
  }
  if (!is.null(setup) && identical(setup$setup_id, setup_id)) {
    unlink(path)
    message(sprintf("starburst: removed the set-up file %s.", path))
  }
  invisible(table)
}


print_setup_plan <- function(plan) {
  message(sprintf("starburst set-up %s in AWS account %s, region %s:",
                  plan$setup_id, plan$account$id, plan$account$region))
  for (step in plan$steps) {
    message(sprintf("  %s %-14s %-40s %s", if (isTRUE(step$exists)) "=" else "+",
                    kind_label(step$kind), step$name, step$why))
  }
  n_new <- sum(!vapply(plan$steps, function(s) isTRUE(s$exists), NA))
  message(if (n_new == 0L) {
    "Everything exists already (= ); set-up will only check the settings."
  } else {
    sprintf("%d to create (+), %d existing (=), all tagged starburst:setup = %s.",
            n_new, length(plan$steps) - n_new, plan$setup_id)
  })
}

## The set-up options as the engine reads them (SetupOptions)
setup_options <- function(name = "starburst", prefix = "starburst", data_retention_days = 7L,
                          log_retention_days = 30L, keep_images = 20L, subnets = NULL,
                          vpc = NULL, bucket = NULL, cloud_builder = FALSE) {
  list(
    name = name, prefix = prefix,
    data_retention_days = as.integer(data_retention_days),
    log_retention_days = as.integer(log_retention_days),
    keep_images = as.integer(keep_images),
    subnets = I(as.character(subnets)), vpc = vpc, bucket = bucket,
    cloud_builder = isTRUE(cloud_builder)
  )
}

kind_label <- function(kind) {
  switch(kind,
    Bucket = "S3 bucket", Repository = "ECR repository", Cluster = "ECS cluster",
    LogGroup = "log group", SecurityGroup = "security group", Role = "IAM role",
    BuildProject = "CodeBuild project",
    kind)
}

ask_yes_no <- function(question) {
  answer <- utils::askYesNo(question, default = FALSE)
  isTRUE(answer)
}

check_string <- function(x, name) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    invalid_argument("Argument '%s' must be a non-empty string, not %s", name, deparse_short(x))
  }
  x
}

check_region <- function(region, null_ok = FALSE) {
  if (is.null(region) && null_ok) return(NULL)
  if (!is.character(region) || length(region) != 1L || is.na(region) ||
      !grepl("^[a-z]{2}(-[a-z]+)+-[0-9]+$", region)) {
    invalid_argument("Argument 'region' must be an AWS region such as \"us-east-1\", not %s",
                     deparse_short(region))
  }
  region
}

to_json <- function(x) {
  as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", digits = NA))
}

## Writes JSON next to the target and renames it into place, so a reader
## never sees half a file
write_json_file <- function(x, path) {
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  tmp <- tempfile(".starburst-", tmpdir = dirname(path))
  on.exit(unlink(tmp), add = TRUE)
  writeLines(jsonlite::prettify(to_json(x)), tmp)
  if (!file.rename(tmp, path)) {
    starburst_abort(sprintf("Cannot write %s; check that its folder is writable.", path),
                    class = "starburst_io_error")
  }
  invisible(path)
}
