## Checking the arguments of plan(starburst, ...) and turning them into the
## session configuration handed to the Rust engine (sb_session_new()).
##
## R stays thin: every value is checked here with a classed error, the
## Fargate size rule itself lives in Rust (sb_validate_size()).

## The options of starburst() that configure the backend (as opposed to the
## per-future arguments 'expr', 'envir', 'seed', ... that future() passes)
backend_option_names <- c("workers", "cpu", "memory", "backend", "spot", "arch",
                          "idle_timeout", "orphan_timeout", "max_retries", "max_cost",
                          "max_hourly_cost")

## Per-future arguments that plan() / tweak() must not set
future_argument_names <- c("expr", "envir", "substitute", "lazy", "seed", "globals",
                           "packages", "stdout", "conditions")

## Arguments that future itself may tweak on any backend
future_tweakable_names <- c("label", "earlySignal", "gc", "split", "maxSizeOfObjects",
                            "interrupts", "hooks")


## Where starburst_setup() records an AWS set-up (environment variable
## STARBURST_CONFIG overrides it, e.g. for the emulator of `cargo xtask emulator`)
aws_setup_file <- function() {
  path <- Sys.getenv("STARBURST_CONFIG", "")
  if (nzchar(path)) return(path)
  file.path(tools::R_user_dir("starburst", which = "config"), "config.json")
}

has_aws_setup <- function() {
  file.exists(aws_setup_file())
}

## The fields of an AWS set-up that sessions need (a set-up made by
## starburst_setup() has a repository and gets its image when plan() needs one)
aws_required_fields <- c("region", "bucket", "cluster", "subnets")

## Reads and checks the AWS set-up file
read_aws_setup <- function(path = aws_setup_file()) {
  if (!file.exists(path)) {
    starburst_abort(
      sprintf("No AWS set-up was found (%s). Run starburst_setup() once to create the AWS resources starburst needs, or use plan(starburst, backend = \"local\") to run futures on local worker processes.", path),
      class = "starburst_backend_unavailable"
    )
  }
  setup <- tryCatch(jsonlite::fromJSON(path, simplifyVector = FALSE), error = function(e) {
    starburst_abort(sprintf("The AWS set-up file %s cannot be read (%s). Run starburst_setup() again to rewrite it.",
                            path, conditionMessage(e)),
                    class = "starburst_setup_invalid")
  })
  missing <- aws_required_fields[!vapply(aws_required_fields, function(f) {
    v <- setup[[f]]
    length(v) > 0L && all(nzchar(unlist(v)))
  }, logical(1L))]
  has <- function(f) length(setup[[f]]) == 1L && nzchar(setup[[f]])
  if (!has("image") && !has("repository")) missing <- c(missing, "image")
  if (length(missing) > 0L) {
    starburst_abort(sprintf("The AWS set-up file %s lacks %s. Run starburst_setup() again to rewrite it.",
                            path, paste(missing, collapse = ", ")),
                    class = "starburst_setup_invalid")
  }
  ## JSON arrays stay arrays, even with one element
  for (f in c("subnets", "security_groups")) {
    if (!is.null(setup[[f]])) setup[[f]] <- I(as.character(unlist(setup[[f]])))
  }
  setup
}


is_scalar_number <- function(x) {
  is.numeric(x) && length(x) == 1L && !is.na(x) && is.finite(x)
}

is_whole_number <- function(x) {
  is_scalar_number(x) && abs(x - round(x)) < sqrt(.Machine$double.eps)
}

is_flag <- function(x) {
  is.logical(x) && length(x) == 1L && !is.na(x)
}


check_workers <- function(workers) {
  if (is.null(workers) || is.function(workers)) return(workers)
  if (!is_whole_number(workers) || workers < 1) {
    invalid_argument("Argument 'workers' must be a positive whole number (or NULL for the default), not %s",
                     deparse_short(workers))
  }
  as.integer(workers)
}

## Resolves 'workers' (NULL, a number, or a function returning a number)
resolve_workers <- function(workers, backend) {
  if (is.function(workers)) workers <- workers()
  if (is.null(workers)) {
    workers <- if (identical(backend, "local")) {
      getOption("starburst.workers", parallelly::availableCores())
    } else {
      getOption("starburst.workers", 10L)
    }
  }
  check_workers(workers)
}

check_cpu <- function(cpu) {
  if (!is_scalar_number(cpu) || cpu <= 0) {
    invalid_argument("Argument 'cpu' must be a positive number of vCPUs (e.g. 0.25, 1, 4), not %s",
                     deparse_short(cpu))
  }
  millicpu <- round(cpu * 1000)
  if (millicpu < 1) {
    invalid_argument("Argument 'cpu' is too small: %s vCPU", format(cpu))
  }
  as.integer(millicpu)
}

#' @importFrom utils head
parse_memory <- function(memory) {
  if (is_scalar_number(memory)) {
    if (memory <= 0) {
      invalid_argument("Argument 'memory' must be positive, not %s", deparse_short(memory))
    }
    return(as.integer(round(memory * 1024)))
  }
  if (!is.character(memory) || length(memory) != 1L || is.na(memory)) {
    invalid_argument("Argument 'memory' must be a string such as \"2GB\" or \"512MB\", or a number of GB, not %s",
                     deparse_short(memory))
  }
  pattern <- "^[[:space:]]*([0-9]*[.]?[0-9]+)[[:space:]]*([A-Za-z]*)[[:space:]]*$"
  if (!grepl(pattern, memory)) {
    invalid_argument("Argument 'memory' must look like \"2GB\" or \"512MB\", not %s", sQuote(memory))
  }
  amount <- as.numeric(sub(pattern, "\\1", memory))
  unit <- toupper(sub(pattern, "\\2", memory))
  if (!nzchar(unit)) unit <- "GB"
  scale <- switch(unit,
    "G" = , "GB" = , "GIB" = 1024,
    "M" = , "MB" = , "MIB" = 1,
    "T" = , "TB" = , "TIB" = 1024 * 1024,
    invalid_argument("Unknown unit %s in argument 'memory' (%s); use \"GB\" or \"MB\"", sQuote(unit), sQuote(memory))
  )
  mib <- round(amount * scale)
  if (mib < 1) {
    invalid_argument("Argument 'memory' must be positive, not %s", sQuote(memory))
  }
  as.integer(mib)
}

check_backend <- function(backend) {
  ## The default, c("aws", "local"), means "choose for me"
  if (identical(backend, c("aws", "local"))) return(NA_character_)
  if (!is.character(backend) || length(backend) != 1L || is.na(backend) ||
      !backend %in% c("aws", "local")) {
    invalid_argument("Argument 'backend' must be \"aws\" or \"local\", not %s", deparse_short(backend))
  }
  backend
}

check_arch <- function(arch) {
  if (identical(arch, c("x86_64", "arm64"))) return("x86_64")
  if (!is.character(arch) || length(arch) != 1L || is.na(arch) ||
      !arch %in% c("x86_64", "arm64")) {
    invalid_argument("Argument 'arch' must be \"x86_64\" or \"arm64\", not %s", deparse_short(arch))
  }
  arch
}

check_spot <- function(spot) {
  if (!is_flag(spot)) {
    invalid_argument("Argument 'spot' must be TRUE or FALSE, not %s", deparse_short(spot))
  }
  spot
}

## Checks a time setting given in seconds; its bounds live in Rust (the
## facade's SECONDS table), so R and the engine agree. 'what' says where
## the value came from (an argument, an option).
check_seconds <- function(x, name, what = sprintf("Argument '%s'", name)) {
  if (!is_scalar_number(x)) {
    invalid_argument("%s must be a number of seconds, not %s", what, deparse_short(x))
  }
  msg <- sb_check_seconds(name, x)
  if (is.character(msg) && length(msg) > 0L) {
    invalid_argument("%s is invalid: %s", what, msg)
  }
  as.numeric(x)
}

check_idle_timeout <- function(idle_timeout) {
  as.integer(ceiling(check_seconds(idle_timeout, "idle_timeout")))
}

check_orphan_timeout <- function(orphan_timeout) {
  check_seconds(orphan_timeout, "orphan_timeout")
}

## Options read while futures run: checked where they are read, with the
## option's name in the message
option_seconds <- function(option, name, default) {
  check_seconds(getOption(option, default), name, sprintf("Option '%s'", option))
}

check_cap <- function(x, name, unit) {
  if (is.null(x)) return(NULL)
  if (!is_scalar_number(x) || x <= 0) {
    invalid_argument("Argument '%s' must be a positive number of %s (or NULL for no cap), not %s",
                     name, unit, deparse_short(x))
  }
  as.numeric(x)
}

check_max_retries <- function(max_retries) {
  if (!is_whole_number(max_retries) || max_retries < 0) {
    invalid_argument("Argument 'max_retries' must be a non-negative whole number, not %s",
                     deparse_short(max_retries))
  }
  as.integer(max_retries)
}


## Checks every backend option without resolving defaults that depend on
## the machine; used by tweak() so that plan() fails early
check_backend_options <- function(args) {
  args <- args[!vapply(args, is.null, NA)]
  if ("workers" %in% names(args)) check_workers(args[["workers"]])
  if ("cpu" %in% names(args)) check_cpu(args[["cpu"]])
  if ("memory" %in% names(args)) parse_memory(args[["memory"]])
  if ("backend" %in% names(args)) check_backend(args[["backend"]])
  if ("spot" %in% names(args)) check_spot(args[["spot"]])
  if ("arch" %in% names(args)) check_arch(args[["arch"]])
  if ("idle_timeout" %in% names(args)) check_idle_timeout(args[["idle_timeout"]])
  if ("orphan_timeout" %in% names(args)) check_orphan_timeout(args[["orphan_timeout"]])
  if ("max_retries" %in% names(args)) check_max_retries(args[["max_retries"]])
  check_cap(args[["max_cost"]], "max_cost", "US dollars per session")
  check_cap(args[["max_hourly_cost"]], "max_hourly_cost", "US dollars per hour")
  invisible(args)
}


## Checks the names given to plan(starburst, ...) / tweak()
check_option_names <- function(names, allowed = c(backend_option_names, future_tweakable_names)) {
  if (length(names) == 0L) return(invisible(names))
  if (is.null(names) || any(!nzchar(names))) {
    invalid_argument("All arguments to plan(starburst, ...) must be named")
  }
  bad <- intersect(names, future_argument_names)
  if (length(bad) > 0L) {
    invalid_argument("Argument(s) %s are set per future (e.g. future(..., seed = TRUE)), not via plan(starburst, ...)",
                     paste(sQuote(bad), collapse = ", "))
  }
  unknown <- setdiff(names, allowed)
  if (length(unknown) > 0L) {
    invalid_argument("Unknown argument(s) to starburst: %s. Known options are: %s",
                     paste(sQuote(unknown), collapse = ", "),
                     paste(c(backend_option_names, future_tweakable_names), collapse = ", "))
  }
  invisible(names)
}


## Validates the backend options and resolves defaults into a configuration.
## Errors are classed; the AWS backend needs a set-up (read_aws_setup()).
## NULL (and arch's default vector) means: the preference (starburst_config()),
## else the built-in default.
resolve_config <- function(workers = NULL, cpu = NULL, memory = NULL, backend = c("aws", "local"),
                           spot = NULL, arch = c("x86_64", "arm64"), idle_timeout = NULL,
                           orphan_timeout = NULL, max_retries = 2, max_cost = NULL,
                           max_hourly_cost = NULL, read_setup = TRUE) {
  prefs <- read_preferences()
  max_cost <- check_cap(max_cost %||% prefs[["max_cost"]], "max_cost", "US dollars per session")
  max_hourly_cost <- check_cap(max_hourly_cost %||% prefs[["max_hourly_cost"]], "max_hourly_cost",
                               "US dollars per hour")
  cpu <- cpu %||% prefs[["cpu"]] %||% 1
  memory <- memory %||% prefs[["memory"]] %||% "2GB"
  spot <- spot %||% prefs[["spot"]] %||% FALSE
  if (identical(arch, c("x86_64", "arm64"))) arch <- prefs[["arch"]] %||% "x86_64"
  idle_timeout <- idle_timeout %||% prefs[["idle_timeout"]] %||% 600
  orphan_timeout <- orphan_timeout %||% prefs[["orphan_timeout"]] %||% 300
  millicpu <- check_cpu(cpu)
  memory_mib <- parse_memory(memory)
  backend <- check_backend(backend)
  spot <- check_spot(spot)
  arch <- check_arch(arch)
  idle_timeout <- check_idle_timeout(idle_timeout)
  orphan_timeout <- check_orphan_timeout(orphan_timeout)
  failure_timeout <- option_seconds("starburst.failure_timeout", "failure_timeout", 180)
  max_retries <- check_max_retries(max_retries)
  check_workers(workers)

  implicit <- is.na(backend)
  if (implicit) backend <- if (sb_has_aws() && has_aws_setup()) "aws" else "local"
  if (backend == "aws" && !sb_has_aws()) {
    starburst_abort("This build of starburst has no AWS backend: it was installed with STARBURST_LOCAL_ONLY set (as `cargo xtask demo` does). Reinstall the package without it to use AWS, or use plan(starburst, backend = \"local\").",
                    class = "starburst_backend_unavailable")
  }

  if (backend == "aws") {
    msg <- sb_validate_size(millicpu, memory_mib)
    if (is.character(msg) && length(msg) > 0L) {
      invalid_argument("Invalid Fargate size cpu = %s, memory = %s: %s",
                       format(millicpu / 1000), format_mib(memory_mib), paste(msg, collapse = " "))
    }
    ## Counting workers needs no set-up (and a worker, which may count them while
    ## evaluating a future, has none)
    aws <- if (read_setup) read_aws_setup() else NULL
    setup_file <- aws_setup_file()
  } else {
    aws <- NULL
    setup_file <- NULL
  }

  if (is.null(workers)) workers <- getOption("starburst.workers", prefs[["workers"]])
  workers <- resolve_workers(workers, backend = backend)

  list(
    backend = backend,
    workers = workers,
    millicpu = millicpu,
    memory_mib = memory_mib,
    spot = spot,
    arch = arch,
    idle_timeout_secs = idle_timeout,
    orphan_timeout_secs = orphan_timeout,
    failure_timeout_secs = failure_timeout,
    max_retries = max_retries,
    max_cost = max_cost,
    max_hourly_cost = max_hourly_cost,
    ## Prices of the set-up's region on AWS; locally, what the run would cost there
    region = if (!is.null(aws)) aws[["region"]] else prefs[["region"]] %||% "us-east-1",
    implicit = implicit,
    setup_file = setup_file,
    aws = aws
  )
}


## The part of the configuration that identifies a session: two plans with
## the same key share workers
config_key <- function(config) {
  keep <- c("backend", "workers", "millicpu", "memory_mib", "spot", "arch",
            "idle_timeout_secs", "orphan_timeout_secs", "failure_timeout_secs", "max_retries",
            "max_cost", "max_hourly_cost", "setup_file")
  paste(format(jsonlite::toJSON(config[keep], auto_unbox = TRUE)), collapse = "")
}


## The JSON object sb_session_new() takes
session_config_json <- function(config, root) {
  env <- getOption("starburst.worker_env", NULL)
  if (is.null(env)) env <- character(0L)
  if (!is.character(env) || (length(env) > 0L && (is.null(names(env)) || any(!nzchar(names(env)))))) {
    invalid_argument("Option 'starburst.worker_env' must be a named character vector")
  }
  env <- as.list(env)
  if (length(env) == 0L) env <- structure(list(), names = character(0L))

  aws <- identical(config[["backend"]], "aws")
  json <- list(
    backend = config[["backend"]],
    workers = config[["engine_workers"]] %||% config[["workers"]],
    millicpu = config[["millicpu"]],
    memory_mib = config[["memory_mib"]],
    arch = config[["arch"]],
    capacity = if (isTRUE(config[["spot"]])) "spot" else "on_demand",
    idle_timeout_secs = config[["idle_timeout_secs"]],
    orphan_timeout_secs = config[["orphan_timeout_secs"]],
    failure_timeout_secs = config[["failure_timeout_secs"]],
    max_retries = config[["max_retries"]],
    max_cost = config[["max_cost"]],
    max_hourly_cost = config[["max_hourly_cost"]],
    region = config[["region"]],
    env = env
  )
  if (aws) {
    ## Workers run the image's R and worker binary, with the task role's credentials
    json[["aws"]] <- config[["aws"]]
  } else {
    json[["root"]] <- root
    json[["rscript"]] <- rscript_path()
    json[["worker_bin"]] <- worker_bin_path()
    json[["lib_paths"]] <- I(normalizePath(.libPaths(), mustWork = FALSE))
  }
  json <- json[!vapply(json, is.null, NA)]
  as.character(jsonlite::toJSON(json, auto_unbox = TRUE, digits = NA))
}


rscript_path <- function() {
  path <- getOption("starburst.rscript", Sys.getenv("STARBURST_RSCRIPT", ""))
  if (!nzchar(path)) {
    path <- file.path(R.home("bin"), if (.Platform$OS.type == "windows") "Rscript.exe" else "Rscript")
  }
  path
}


worker_bin_path <- function() {
  path <- getOption("starburst.worker_bin", Sys.getenv("STARBURST_WORKER_BIN", ""))
  if (!nzchar(path)) {
    path <- system.file("bin", "starburst-worker", package = "starburst")
  }
  if (!nzchar(path) || !file.exists(path)) {
    starburst_abort(
      sprintf("Cannot find the starburst-worker binary%s. It is built and installed with the package (inst/bin); reinstall starburst, or point option 'starburst.worker_bin' or environment variable STARBURST_WORKER_BIN to it.",
              if (nzchar(path)) sprintf(" at %s", sQuote(path)) else ""),
      class = "starburst_worker_missing"
    )
  }
  normalizePath(path)
}


format_mib <- function(mib) {
  if (mib %% 1024 == 0) sprintf("%gGB", mib / 1024) else sprintf("%dMB", as.integer(mib))
}

deparse_short <- function(x) {
  if (is.function(x)) return("a function")
  s <- paste(deparse(x, width.cutoff = 60L), collapse = " ")
  if (nchar(s) > 60L) s <- paste0(substr(s, 1L, 57L), "...")
  s
}


## One line, once per plan, when plan(starburst) falls back to local workers
note_local_fallback <- function(config) {
  if (!isTRUE(config[["implicit"]]) || !identical(config[["backend"]], "local")) return(invisible(FALSE))
  key <- config_key(config)
  if (identical(.state[["noted_key"]], key)) return(invisible(FALSE))
  .state[["noted_key"]] <- key
  if (isTRUE(getOption("starburst.quiet", FALSE))) return(invisible(FALSE))
  message(sprintf("starburst: %s; running futures on %d local worker process%s (backend = \"local\").",
                  if (sb_has_aws()) "no AWS set-up found" else "this build has no AWS backend",
                  config[["workers"]], if (config[["workers"]] == 1L) "" else "es"))
  invisible(TRUE)
}
