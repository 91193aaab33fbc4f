#' Resolve futures on AWS Fargate or on local worker processes
#'
#' `starburst` is a \pkg{future} backend: after `plan(starburst, ...)`,
#' futures created by [future::future()], `%<-%`, \pkg{future.apply},
#' \pkg{furrr}, \pkg{doFuture}, and the packages built on them are evaluated
#' by persistent R processes supervised by the `starburst-worker` engine.
#' `future_starburst` is an alias.
#'
#' Do not call `starburst()` directly; pass it to [future::plan()].
#'
#' @section Backends:
#' With `backend = "local"`, workers are processes on this machine, started
#' when futures need them (up to `workers`) and stopped after `idle_timeout`
#' seconds without work, when the plan changes, or when R exits.
#'
#' With `backend = "aws"`, workers are AWS Fargate tasks in your account
#' (ECS), futures and their values travel through S3, and worker logs go to
#' CloudWatch Logs. Workers start when futures need them (up to `workers`),
#' run the set-up's container image, take their AWS credentials from the task
#' role (never from this R session), and stop after `idle_timeout` seconds
#' without work, when the plan changes, or when R exits. A worker lost to a
#' Spot interruption has its future re-run elsewhere (up to `max_retries`).
#' The AWS backend needs a set-up: the file `config.json` under
#' `tools::R_user_dir("starburst", "config")`, or the file named by the
#' environment variable `STARBURST_CONFIG` (which `cargo xtask emulator`
#' prints for its local AWS emulator). Without one, asking for AWS gives an
#' error of class `starburst_backend_unavailable`; a damaged one, an error of
#' class `starburst_setup_invalid`.
#'
#' By default (`backend` not given) starburst uses AWS when a set-up exists,
#' and otherwise local workers, saying so in a one-line message once per plan.
#'
#' @section Options and environment variables:
#' \describe{
#'   \item{`STARBURST_CONFIG`}{Path of the AWS set-up file to use instead of
#'     the one under `tools::R_user_dir("starburst", "config")`.}
#'   \item{`starburst.workers`}{Default number of workers when `workers` is
#'     `NULL`. Default: the `workers` of [starburst_config()], else
#'     `parallelly::availableCores()` for the local backend and 10 for AWS.}
#'   \item{`starburst.blob_threshold`}{Globals whose serialized size is above
#'     this many bytes are sent as content-addressed blobs, uploaded once per
#'     session however many futures use them. Default: `1048576` (1 MB).}
#'   \item{`starburst.reuse_globals`}{Whether such a global is serialized
#'     only once per session: a later future whose global is *the same R
#'     object* (not an equal copy) refers to the stored blob without
#'     serializing or hashing it again. An object is the same while it is
#'     not modified: R copies a value before changing it, so a modified value
#'     (`x[1] <- 0`, a new `x <- f(x)`, an object re-created with the same
#'     content) is a new object and is sent anew. The session keeps the values
#'     it remembers alive, which is what makes this safe, up to a memory
#'     budget: `TRUE` (1 GiB and 16 values, least recently used forgotten
#'     first), `FALSE` (off) or a number of bytes. Never reused, because
#'     they can change in place: environments other than the global one and
#'     packages' (so also functions and formulas created inside a function,
#'     which carry its local variables), external pointers, and data.tables;
#'     these are serialized for every future. Default: `TRUE`.}
#'   \item{`starburst.collect_interval`}{Seconds `value()` waits for the
#'     engine per step; it can be interrupted between steps (0.001 to 60).
#'     Default: `0.2`.}
#'   \item{`starburst.failure_timeout`}{Seconds a kind of AWS request (the
#'     session's data in S3, starting workers, watching them) may keep failing
#'     with errors that may pass before the futures waiting on it fail with an
#'     error naming the cause (classes `starburst_store_unreachable`,
#'     `starburst_launch_failed`, `starburst_compute_unreachable`); access
#'     denied and missing or expired credentials fail them at once
#'     (`starburst_access_denied`, `starburst_credentials`). Messages of class
#'     `starburst_notice` say while R waits that a failure persists. From 10
#'     to 3600. Default: `180`.}
#'   \item{`starburst.progress`}{If `FALSE`, no status line counts AWS
#'     workers by start-up phase while R waits for values, and no docker
#'     output is shown while an environment image builds. Default: `TRUE`.}
#'   \item{`starburst.renv_lock`, `starburst.environment`,
#'     `starburst.runtime_image`, `starburst.runtime_package`,
#'     `starburst.runtime_base`, `starburst.builder`, `starburst.snapshot`}{The
#'     lockfile whose packages workers install (default `"renv.lock"`, when it
#'     exists); `"sync"` or `"image"` mode; a published runtime image, or
#'     starburst's binary package to build one from, and its base image; the
#'     image builder (`"docker"`, `"podman"` or `"codebuild"`); the Posit Package Manager
#'     snapshot (a date `"YYYY-MM-DD"` or `"latest"`; default: the lockfile's
#'     date, else the newest CRAN publication date of the session's packages). See
#'     [starburst_rebuild_environment()].}
#'   \item{`starburst.quiet`}{If `TRUE`, no message says that futures run on
#'     local workers because no AWS set-up was found. Default: `FALSE`.}
#'   \item{`starburst.worker_env`}{A named character vector of environment
#'     variables set for the worker processes. Default: none. For example
#'     `STARBURST_KEEP_BYTES`: how many bytes of large globals a worker's R
#'     process keeps in memory between futures, so that futures sharing
#'     them neither download nor unserialize them again (default: a quarter of
#'     the worker's memory, which the workers of the local backend share;
#'     `"0"` keeps none). Each future gets the kept
#'     values bound anew: one that modifies a global changes its own copy,
#'     never what later futures see.}
#'   \item{`starburst.worker_bin`, env. var. `STARBURST_WORKER_BIN`}{Path of
#'     the `starburst-worker` binary. Default: the one installed with the
#'     package, `system.file("bin", "starburst-worker", package = "starburst")`.}
#'   \item{`starburst.rscript`, env. var. `STARBURST_RSCRIPT`}{The `Rscript`
#'     that local workers run. Default: the one of the current R,
#'     `file.path(R.home("bin"), "Rscript")`.}
#'   \item{env. var. `R_USER_CONFIG_DIR`}{Moves the folder
#'     `tools::R_user_dir("starburst", "config")` where the AWS set-up is
#'     looked for.}
#' }
#' Worker processes use the library paths of the current R session
#' (`.libPaths()`), so starburst and the packages futures need must be
#' installed there. The R processes started by a worker run
#' `Rscript --vanilla`, so they do not read `.Rprofile` or `.Renviron` files.
#'
#' @section Failures:
#' An error in a future's expression is relayed by `value()` with its own
#' classes, as with any backend. When the R process evaluating a future dies
#' (a crash, `quit()`, being killed), or its worker is lost, `value()` gives
#' a [StarburstFutureError] that says what happened and shows the end of the
#' worker log; the worker restarts its R process and later futures run as
#' usual. `cancel()` (future >= 1.40.0) stops futures that are running.
#'
#' @param expr,envir,substitute,lazy,seed,globals,packages,stdout,conditions,label
#' Per-future arguments, set by [future::future()] and never via `plan()`.
#'
#' @param workers (positive whole number, function, or `NULL`) Maximum number
#' of workers, each evaluating one future at a time. Futures beyond that
#' are queued. `NULL` (default) means option `starburst.workers`, else the
#' `workers` of [starburst_config()], else `parallelly::availableCores()` for
#' local workers and 10 for AWS. A
#' function is called without arguments when the plan is used.
#'
#' @param cpu (numeric) vCPUs per worker: 0.25, 0.5, 1, 2, 4, 8, or 16
#' on AWS. Default (`NULL`): the `cpu` of [starburst_config()], else 1.
#'
#' @param memory Memory per worker, as a string such as `"2GB"` or `"512MB"`,
#' or a number of GB. On AWS it must fit `cpu` (Fargate's table, e.g. 2GB to
#' 8GB for 1 vCPU). Default (`NULL`): the `memory` of [starburst_config()],
#' else `"2GB"`.
#'
#' @param backend `"aws"` or `"local"`. Default: AWS when an AWS set-up exists,
#' else local.
#'
#' @param spot (logical) Use Fargate Spot capacity on AWS. Default (`NULL`):
#' the `spot` of [starburst_config()], else `FALSE`.
#'
#' @param arch `"x86_64"` or `"arm64"`; the CPU architecture of AWS
#' workers. Default: the `arch` of [starburst_config()], else `"x86_64"`.
#'
#' @param idle_timeout (numeric) Seconds a worker stays without work before it
#' stops. Default (`NULL`): the `idle_timeout` of [starburst_config()], else
#' 600.
#'
#' @param orphan_timeout (numeric) Seconds a worker goes on without hearing
#' from this R session before it stops, with its R process, whatever it is
#' doing: when R is killed or crashes, or the machine sleeps or goes offline,
#' no worker keeps running (and billing) for longer than this (plus a fifth of
#' it, at most 30 s). From 5 to 3600. Default (`NULL`): the `orphan_timeout`
#' of [starburst_config()], else 300. With `max_cost`, every worker also has a
#' hard deadline by which the session's spend stays within the cap even if
#' nobody is watching, and no worker is started in the last `orphan_timeout`
#' of a budget.
#'
#' @param max_retries (whole number) How many times a future whose worker was
#' lost is run again on another worker before it fails. Default: 2.
#'
#' @param max_cost,max_hourly_cost Hard caps on the session's spend, in US
#' dollars (per session) and US dollars per hour (of the workers running at
#' once), priced from the Fargate list prices of the set-up's region (of
#' `starburst_config()`'s `region`, else us-east-1, for local workers). No
#' worker is started whose cost could take projected spend past a cap; at a
#' cap the workers are stopped and the futures not yet resolved fail with an
#' error of class `starburst_budget_exceeded`. Default (`NULL`): the caps of
#' [starburst_config()], else none. See [starburst_cost()].
#'
#' @param \ldots Further arguments that future passes along to the future.
#' Unknown arguments given to `plan(starburst, ...)` are an error of class
#' `starburst_invalid_argument`.
#'
#' @return `starburst()` is not meant to be called; with future (< 1.40.0)
#' it returns a [StarburstFuture].
#'
#' @examples
#' library(future)
#' plan(starburst, workers = 2, backend = "local")
#' f <- future(Sys.getpid())
#' value(f) != Sys.getpid()
#'
#' y %<-% { message("hello from a worker"); 6 * 7 }
#' y
#'
#' plan(sequential)   ## stops the workers
#'
#' @examplesIf interactive()
#' ## On AWS (needs starburst_setup() once)
#' plan(starburst, workers = 100, cpu = 1, memory = "2GB")
#'
#' @seealso [future::plan()], [StarburstFutureError]
#'
#' @aliases future_starburst
#' @export
starburst <- function(expr, envir = parent.frame(), substitute = TRUE, lazy = FALSE, seed = FALSE, globals = TRUE, packages = NULL, stdout = TRUE, conditions = "condition", label = NULL, workers = NULL, cpu = NULL, memory = NULL, backend = c("aws", "local"), spot = NULL, arch = c("x86_64", "arm64"), idle_timeout = NULL, orphan_timeout = NULL, max_retries = 2, max_cost = NULL, max_hourly_cost = NULL, ...) {
  if (substitute) expr <- substitute(expr)

  if (use_backend_api()) {
    starburst_abort("starburst() must not be called directly; use it via future::plan(starburst, ...)",
                    class = "starburst_invalid_argument")
  }

  config <- resolve_config(workers = workers, cpu = cpu, memory = memory, backend = backend,
                           spot = spot, arch = arch, idle_timeout = idle_timeout,
                           orphan_timeout = orphan_timeout,
                           max_retries = max_retries, max_cost = max_cost,
                           max_hourly_cost = max_hourly_cost)
  note_local_fallback(config)

  future <- StarburstFuture(expr = expr, substitute = FALSE, envir = envir, lazy = lazy,
                            seed = seed, globals = globals, packages = packages, stdout = stdout,
                            conditions = conditions, label = label, config = config, ...)
  if (!future[["lazy"]]) future <- run(future)
  invisible(future)
}
class(starburst) <- c("starburst", "multiprocess", "future", "function")
attr(starburst, "init") <- TRUE

#' @rdname starburst
#' @export
future_starburst <- starburst


#' @importFrom future tweak
#' @export
tweak.starburst <- function(strategy, ..., penvir = parent.frame()) {
  args <- list(...)
  check_option_names(names(args))
  check_backend_options(args)
  ## Resolve the backend now, so that plan() fails before it changes the
  ## plan (e.g. an invalid Fargate size, or AWS being unavailable)
  if (any(c("backend", "cpu", "memory") %in% names(args))) {
    config_args <- args[intersect(names(args), setdiff(backend_option_names, "workers"))]
    do.call(resolve_config, args = config_args)
  }
  if (isTRUE(args[["interrupts"]]) || isFALSE(args[["interrupts"]]) || is.null(args[["interrupts"]])) {
  } else {
    invalid_argument("Argument 'interrupts' must be TRUE or FALSE, not %s", deparse_short(args[["interrupts"]]))
  }
  NextMethod()
}


## The value of a backend option of a plan function (tweaked or not)
evaluator_option <- function(evaluator, name) {
  default <- formals(starburst)[[name]]
  expr <- formals(evaluator)[[name]]
  if (is.null(expr) || identical(expr, quote(expr = ))) expr <- default
  eval(expr, envir = baseenv())
}

evaluator_config <- function(evaluator) {
  args <- lapply(backend_option_names, FUN = evaluator_option, evaluator = evaluator)
  names(args) <- backend_option_names
  do.call(resolve_config, args = c(args, list(read_setup = FALSE)))
}


#' @importFrom future nbrOfWorkers
#' @export
nbrOfWorkers.starburst <- function(evaluator) {
  backend <- attr(evaluator, "backend", exact = TRUE)
  if (!is.null(backend)) return(nbrOfWorkers(backend))
  ## A number of workers is the answer (future 1.31 asks this in every
  ## worker's R process after every future; resolving the whole configuration
  ## there cost a fifth of a short future's time)
  workers <- evaluator_option(evaluator, "workers")
  if (is_whole_number(workers) && workers >= 1) return(as.integer(workers))
  evaluator_config(evaluator)[["workers"]]
}


#' @importFrom future nbrOfFreeWorkers
#' @export
nbrOfFreeWorkers.starburst <- function(evaluator, background = FALSE, ...) {
  backend <- attr(evaluator, "backend", exact = TRUE)
  if (!is.null(backend)) return(nbrOfFreeWorkers(backend, background = background, ...))
  config <- evaluator_config(evaluator)
  s <- current_session()
  if (is.null(s) || !identical(s[["key"]], config_key(config))) return(config[["workers"]])
  free_workers(s, config[["workers"]])
}


## Workers not taken by an uncollected future of the session
free_workers <- function(s, workers) {
  for (id in ls(s[["tasks"]], all.names = TRUE)) {
    future <- s[["tasks"]][[id]]
    if (!is.null(future)) tryCatch(collect_future(future, timeout = 0), error = function(e) NULL)
  }
  max(0L, as.integer(workers) - session_active_count(s))
}


use_backend_api <- function() {
  isTRUE(.state[["backend_api"]])
}
