## Persisted preferences (starburst_config()): defaults for plan(starburst),
## starburst_setup() and the budget caps, kept as JSON beside the set-up file.

`%||%` <- function(x, y) if (is.null(x)) y else x

## name = list(default, check); a check returns the value to store or raises a
## classed error naming the valid range
preference_specs <- function() {
  list(
    workers = list(default = NULL, check = function(x) {
      if (!is_whole_number(x) || x < 1 || x > 10000) {
        invalid_argument("'workers' must be a whole number from 1 to 10000, not %s", deparse_short(x))
      }
      as.integer(x)
    }),
    cpu = list(default = 1, check = function(x) {
      if (!is_scalar_number(x) || !x %in% fargate_cpus) {
        invalid_argument("'cpu' must be one of Fargate's vCPU sizes %s, not %s",
                         paste(fargate_cpus, collapse = ", "), deparse_short(x))
      }
      x
    }),
    memory = list(default = "2GB", check = function(x) {
      format_mib(parse_memory(x))
    }),
    spot = list(default = FALSE, check = function(x) check_spot(x)),
    arch = list(default = "x86_64", check = function(x) check_arch(x)),
    region = list(default = NULL, check = function(x) check_region(x)),
    max_cost = list(default = NULL, check = function(x) {
      if (!is_scalar_number(x) || x <= 0) {
        invalid_argument("'max_cost' must be a positive number of US dollars per session, not %s", deparse_short(x))
      }
      x
    }),
    max_hourly_cost = list(default = NULL, check = function(x) {
      if (!is_scalar_number(x) || x <= 0) {
        invalid_argument("'max_hourly_cost' must be a positive number of US dollars per hour, not %s", deparse_short(x))
      }
      x
    }),
    idle_timeout = list(default = 600, check = function(x) {
      check_seconds(x, "idle_timeout", "'idle_timeout'")
    }),
    orphan_timeout = list(default = 300, check = function(x) {
      check_seconds(x, "orphan_timeout", "'orphan_timeout'")
    }),
    data_retention_days = list(default = 7L, check = function(x) {
      if (!is_whole_number(x) || x < 1 || x > 3650) {
        invalid_argument("'data_retention_days' must be a whole number of days from 1 to 3650, not %s", deparse_short(x))
      }
      as.integer(x)
    })
  )
}

fargate_cpus <- c(0.25, 0.5, 1, 2, 4, 8, 16)

preferences_file <- function() {
  path <- Sys.getenv("STARBURST_PREFERENCES", "")
  if (nzchar(path)) return(path)
  file.path(tools::R_user_dir("starburst", which = "config"), "preferences.json")
}

read_preferences <- function(path = preferences_file()) {
  if (!file.exists(path)) return(list())
  prefs <- tryCatch(jsonlite::fromJSON(path, simplifyVector = TRUE), error = function(e) {
    starburst_abort(sprintf("The preferences file %s cannot be read (%s). Fix or delete it, or run starburst_config(reset = TRUE).",
                            path, conditionMessage(e)),
                    class = "starburst_setup_invalid")
  })
  if (!is.list(prefs)) prefs <- list()
  ## Only known names, each still valid (the file may have been edited by hand)
  specs <- preference_specs()
  prefs <- prefs[intersect(names(prefs), names(specs))]
  for (name in names(prefs)) {
    prefs[[name]] <- tryCatch(specs[[name]]$check(prefs[[name]]), starburst_invalid_argument = function(e) {
      starburst_abort(sprintf("The preferences file %s has an invalid value: %s Fix it with starburst_config(%s = ...).",
                              path, conditionMessage(e), name),
                      class = "starburst_setup_invalid")
    })
  }
  prefs
}

## One preference: the stored value, else `default`
preference <- function(name, default = NULL) {
  read_preferences()[[name]] %||% default
}


#' Persisted starburst preferences
#'
#' Sets, shows or resets the defaults starburst uses when you do not pass a
#' value: the worker count and size of `plan(starburst)`, Spot and the CPU
#' architecture, the AWS region of [starburst_setup()], the budget caps of
#' AWS sessions, the workers' idle timeout and how long session data is kept.
#' They are stored as JSON in `preferences.json` under
#' `tools::R_user_dir("starburst", "config")` (or the file named by the
#' environment variable `STARBURST_PREFERENCES`).
#'
#' Every value is checked before anything is stored: an invalid one is an
#' error of class `starburst_invalid_argument` naming the valid range, and
#' leaves the stored preferences as they were. Pass `NULL` to forget one
#' preference (its default applies again).
#'
#' @param workers Default number of workers (1 to 10000).
#' @param cpu Default vCPUs per worker: 0.25, 0.5, 1, 2, 4, 8 or 16.
#' @param memory Default memory per worker, e.g. `"4GB"`; it must fit `cpu`
#'   (Fargate's table).
#' @param spot Use Fargate Spot by default (`TRUE`/`FALSE`).
#' @param arch `"x86_64"` or `"arm64"`.
#' @param region AWS region, e.g. `"eu-west-1"`.
#' @param max_cost Hard cap on the spend of one AWS session, in US dollars.
#' @param max_hourly_cost Hard cap on the hourly spend of the running
#'   workers, in US dollars per hour.
#' @param idle_timeout Seconds a worker waits for work before it stops
#'   (1 to 86400).
#' @param orphan_timeout Seconds a worker goes on without hearing from its R
#'   session before it stops (5 to 3600); see [starburst()].
#' @param data_retention_days Days session data is kept in S3 (1 to 3650),
#'   used by [starburst_setup()].
#' @param reset If `TRUE`, forget every preference first.
#'
#' @return Invisibly when setting, visibly when called without arguments: an
#'   object of class `starburst_config`, a list of every preference's value
#'   in force (stored or default), with attribute `stored` naming the stored
#'   ones.
#'
#' @examples
#' old <- Sys.getenv("STARBURST_PREFERENCES")
#' Sys.setenv(STARBURST_PREFERENCES = tempfile(fileext = ".json"))
#' starburst_config(workers = 20, cpu = 2, memory = "4GB", max_cost = 5)
#' starburst_config()
#' try(starburst_config(cpu = 3))
#' starburst_config(max_cost = NULL)
#' Sys.setenv(STARBURST_PREFERENCES = old)
#' @seealso [starburst()], [starburst_setup()]
#' @export
starburst_config <- function(workers, cpu, memory, spot, arch, region, max_cost,
                             max_hourly_cost, idle_timeout, orphan_timeout,
                             data_retention_days, reset = FALSE) {
  if (!is_flag(reset)) {
    invalid_argument("Argument 'reset' must be TRUE or FALSE, not %s", deparse_short(reset))
  }
  specs <- preference_specs()
  given <- list()
  for (name in names(specs)) {
    if (!eval(call("missing", as.name(name)))) given[name] <- list(get(name))
  }
  if (length(given) == 0L && !reset) return(config_view(read_preferences()))

  prefs <- if (reset) list() else read_preferences()
  for (name in names(given)) {
    value <- given[[name]]
    if (is.null(value)) {
      prefs[[name]] <- NULL
    } else {
      prefs[[name]] <- tryCatch(specs[[name]]$check(value), starburst_invalid_argument = function(e) {
        starburst_abort(sprintf("Invalid preference: %s Nothing was changed.", conditionMessage(e)),
                        class = "starburst_invalid_argument")
      })
    }
  }
  cpu <- prefs[["cpu"]] %||% specs$cpu$default
  memory <- prefs[["memory"]] %||% specs$memory$default
  msg <- sb_validate_size(round(cpu * 1000), parse_memory(memory))
  if (is.character(msg) && length(msg) > 0L) {
    invalid_argument("Invalid preference: cpu = %s with memory = %s is not a Fargate size: %s Nothing was changed.",
                     format(cpu), memory, paste(msg, collapse = " "))
  }
  path <- preferences_file()
  if (length(prefs) == 0L) {
    unlink(path)
  } else {
    write_json_file(prefs, path)
  }
  invisible(config_view(prefs))
}

config_view <- function(prefs) {
  specs <- preference_specs()
  values <- lapply(names(specs), function(name) prefs[[name]] %||% specs[[name]]$default)
  names(values) <- names(specs)
  structure(values, stored = names(prefs), class = "starburst_config")
}

#' @export
print.starburst_config <- function(x, ...) {
  stored <- attr(x, "stored")
  cat(sprintf("starburst preferences (%s)\n", preferences_file()))
  for (name in names(x)) {
    value <- x[[name]]
    shown <- if (is.null(value)) "not set" else format(value)
    cat(sprintf("  %-20s %s%s\n", name, shown,
                if (name %in% stored) "" else if (is.null(value)) "" else "  (default)"))
  }
  invisible(x)
}
