## cargo xtask bench: per-future overhead and throughput of starburst's local
## backend against multisession and sequential, measured in the same run, as
## ms per future and as ratios. Each measurement resolves `futures` trivial
## futures on 2 workers via future_lapply(..., future.chunk.size = 1), after a
## warm-up that starts the workers.
suppressPackageStartupMessages({
  library(future)
  library(future.apply)
  library(starburst)
})
args <- commandArgs(trailingOnly = TRUE)
futures <- if (length(args) >= 1) as.integer(args[[1]]) else 200L
reps <- if (length(args) >= 2) as.integer(args[[2]]) else 3L

## Throughput: `futures` futures resolved by future_lapply; latency: one future at a time
## (future() then value()), the round trip a single future costs.
measure <- function(setup) {
  setup()
  invisible(future_lapply(1:4, identity, future.chunk.size = 1))   # warm-up
  times <- vapply(seq_len(reps), function(r) {
    system.time(future_lapply(seq_len(futures), function(i) i, future.chunk.size = 1))[["elapsed"]]
  }, numeric(1))
  n1 <- max(20L, futures %/% 4L)
  one <- system.time(for (i in seq_len(n1)) value(future(i)))[["elapsed"]]
  c(throughput = 1000 * median(times) / futures, latency = 1000 * one / n1)
}

worker_stats <- NULL
plans <- list(
  sequential = function() plan(sequential),
  multisession = function() plan(multisession, workers = 2),
  starburst = function() plan(starburst, workers = 2, backend = "local")
)
res <- vapply(names(plans), function(p) {
  v <- measure(plans[[p]])
  if (p == "starburst") worker_stats <<- starburst:::session_info(starburst:::current_session())
  plan(sequential)
  v
}, numeric(2))
ms <- res["throughput", ]
lat <- res["latency", ]

cat(sprintf("\nper-future cost, %d futures x %d reps on 2 workers (median), R %s, future %s\n",
            futures, reps, getRversion(), packageVersion("future")))
cat(sprintf("  %-14s %9s %16s %10s %20s\n", "plan", "ms/future", "vs multisession", "futures/s", "one-at-a-time ms"))
for (p in names(ms)) {
  cat(sprintf("  %-14s %9.2f %15.2fx %10.0f %14.2f (%.2fx)\n", p, ms[[p]], ms[[p]] / ms[["multisession"]],
              1000 / ms[[p]], lat[[p]], lat[[p]] / lat[["multisession"]]))
}
if (!is.null(worker_stats)) {
  cat(sprintf("  starburst: %d tasks; assignment written -> result seen by the client %.2f ms; worker read -> result committed %.2f ms (mean)\n",
              as.integer(worker_stats$completed), worker_stats$mean_roundtrip_ms, worker_stats$mean_worker_ms))
}
cat(sprintf("  target: starburst <= 0.5 x multisession: %s\n",
            if (ms[["starburst"]] <= 0.5 * ms[["multisession"]]) "met" else "NOT met"))
