## cargo xtask bench (cloud latency): futures/s of plan(starburst, backend = "aws") on an
## emulator that delays every AWS request (`--latency-ms`), for several worker counts in the
## same run, and the AWS requests each future costs (client and workers, S3 and ECS).
## Arguments: futures per measurement, repetitions, worker counts (comma-separated).
## Needs STARBURST_BENCH_EMULATOR (the emulator's URL) and the environment that points the
## package at it.
suppressPackageStartupMessages({
  library(future)
  library(future.apply)
  library(starburst)
})
args <- commandArgs(trailingOnly = TRUE)
futures <- if (length(args) >= 1) as.integer(args[[1]]) else 160L
reps <- if (length(args) >= 2) as.integer(args[[2]]) else 3L
counts <- if (length(args) >= 3) as.integer(strsplit(args[[3]], ",")[[1]]) else c(2L, 6L)
latency <- Sys.getenv("STARBURST_BENCH_LATENCY_MS", "?")

emulator <- Sys.getenv("STARBURST_BENCH_EMULATOR")
stopifnot(nzchar(emulator))
stats <- function() {
  con <- url(paste0(emulator, "/_starburst/stats"))
  on.exit(close(con))
  s <- jsonlite::fromJSON(paste(readLines(con, warn = FALSE), collapse = ""))
  unlist(s$requests)
}
delta <- function(after, before) {
  ops <- union(names(before), names(after))
  d <- vapply(ops, function(o) {
    (if (o %in% names(after)) after[[o]] else 0) - (if (o %in% names(before)) before[[o]] else 0)
  }, numeric(1))
  d[d > 0]
}

rows <- lapply(counts, function(w) {
  plan(starburst, workers = w, backend = "aws")
  # Warm-up: every worker started and has run a future.
  invisible(future_lapply(seq_len(4L * w), identity, future.chunk.size = 1))
  before <- stats()
  times <- vapply(seq_len(reps), function(r) {
    system.time(v <- future_lapply(seq_len(futures), function(i) i, future.chunk.size = 1))[["elapsed"]]
  }, numeric(1))
  d <- delta(stats(), before)
  plan(sequential)
  list(workers = w, rate = futures / median(times), times = times,
       per_future = sum(d) / (futures * reps), ops = sort(d / (futures * reps), decreasing = TRUE))
})

cat(sprintf("\naws backend on the emulator at %s ms per AWS request: %d trivial futures x %d reps (median), R %s\n",
            latency, futures, reps, getRversion()))
cat(sprintf("  %8s %10s %12s %14s\n", "workers", "futures/s", "vs first", "requests/fut"))
for (r in rows) {
  cat(sprintf("  %8d %10.1f %11.2fx %14.2f\n", r$workers, r$rate, r$rate / rows[[1]]$rate, r$per_future))
}
for (r in rows) {
  cat(sprintf("  requests per future with %d workers:\n", r$workers))
  for (o in names(r$ops)) cat(sprintf("    %-36s %6.2f\n", o, r$ops[[o]]))
}
if (length(rows) >= 2L && rows[[1]]$workers == 2L && rows[[2]]$workers == 6L) {
  ratio <- rows[[2]]$rate / rows[[1]]$rate
  cat(sprintf("  goal: 6 workers >= 2.7x the futures/s of 2 workers: %.2fx, %s\n",
              ratio, if (ratio >= 2.7) "met" else "NOT met"))
}
