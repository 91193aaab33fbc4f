## Figures of worker environments with real containers (run by `cargo xtask containers
## --figures`, against the emulator's --containers simulator, with podman, a local Debian base
## and the local binary repository): per mode and package count, the time from a worker's
## launch (RunTask; its container starts at once here) to its first evaluation, from the session
## timeline.
## Sync mode: a first session builds the library archive, later ones download it; image mode
## has the packages in the image (its start is the runtime's own).
##
##   Rscript xtask/r/environments.R [reps]
library(starburst)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[[1L]]) else 3L
pm <- Sys.getenv("STARBURST_TEST_PACKAGE_MANAGER")
options(starburst.runtime_base = Sys.getenv("STARBURST_TEST_RUNTIME_BASE"),
        starburst.runtime_distribution = "debian/12/bookworm",
        starburst.package_managers = pm,
        starburst.runtime_repository = paste0(pm, "/cran/__linux__/bookworm/latest"),
        starburst.builder = "podman", starburst.progress = FALSE, starburst.quiet = TRUE)
Sys.setenv(STARBURST_PREFERENCES = tempfile(fileext = ".json"), R_USER_CACHE_DIR = tempfile())
Sys.setenv(STARBURST_CONFIG = file.path(tempdir(), "setup.json"))
suppressMessages(starburst_setup(region = "us-east-1", name = "sbfig", confirm = FALSE))

sets <- list(two = c("data.table", "xml2"),
             ten = c("data.table", "xml2", "R6", "magrittr", "glue", "stringi", "zoo", "digest", "yaml", "Rcpp"))
lock_for <- function(packages) {
  lock <- tempfile(fileext = ".lock")
  pkgs <- lapply(packages, function(p) list(Package = p, Version = utils::packageDescription(p)$Version,
                                            Source = "Repository", Repository = "CRAN"))
  names(pkgs) <- packages
  writeLines(jsonlite::toJSON(list(R = list(Version = as.character(getRversion()),
                                            Repositories = list(list(Name = "CRAN", URL = paste0(pm, "/cran/latest")))),
                                   Packages = pkgs), auto_unbox = TRUE), lock)
  lock
}

## One session of one worker: the seconds from its container's start to its first evaluation
start_to_first <- function(packages) {
  future::plan(starburst, backend = "aws", workers = 1L)
  on.exit(future::plan(future::sequential))
  f <- future::future(vapply(packages, function(p) { loadNamespace(p); TRUE }, NA))
  stopifnot(all(future::value(f)))
  tl <- starburst_timeline()
  as.numeric(difftime(min(tl$futures$started), tl$workers$launched[1], units = "secs"))
}

rows <- list()
for (set in names(sets)) {
  options(starburst.renv_lock = lock_for(sets[[set]]))
  t0 <- Sys.time()
  options(starburst.environment = "image")
  env <- starburst_rebuild_environment(mode = "image")
  build <- as.numeric(Sys.time() - t0, units = "secs")
  image <- vapply(seq_len(reps), function(i) start_to_first(sets[[set]]), 0)
  options(starburst.environment = "sync")
  first_sync <- start_to_first(sets[[set]])   # builds the archive
  sync <- vapply(seq_len(reps), function(i) start_to_first(sets[[set]]), 0)
  ## the archive's size, from the last worker's log ("Downloaded { bytes: N, ...")
  future::plan(starburst, backend = "aws", workers = 1L)
  invisible(future::value(future::future(1)))
  log <- paste(starburst_logs(n = Inf)$message, collapse = "\n")
  future::plan(future::sequential)
  bytes <- as.numeric(sub(".*Downloaded \\{ bytes: ([0-9]+).*", "\\1", log))
  rows[[set]] <- data.frame(packages = length(sets[[set]]), image_build_s = round(build, 1),
                            image_start_to_first_s = round(stats::median(image), 2),
                            sync_first_worker_s = round(first_sync, 2),
                            sync_later_workers_s = round(stats::median(sync), 2),
                            archive_mb = round(bytes / 1e6, 1))
}
out <- do.call(rbind, rows)
print(out, row.names = FALSE)
cat("(medians of", reps, "sessions; image_build_s includes the runtime for the first set)\n")
## The containers' network interfaces hold the security group until they stop
for (i in 1:120) {
  tasks <- jsonlite::fromJSON(paste0(Sys.getenv("AWS_ENDPOINT_URL"), "/_starburst/tasks"))$tasks
  if (is.null(tasks) || all(tasks$phase == "STOPPED")) break
  Sys.sleep(0.5)
}
suppressMessages(starburst_teardown(confirm = FALSE))
