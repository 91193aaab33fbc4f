## cargo xtask bench: per-future overhead and throughput of starburst's local
## backend (and, with the emulator, its aws backend) against multisession and
## sequential, measured in the same run, as ms per future and as ratios. Each
## measurement resolves `futures` trivial futures on 2 workers via
## future_lapply(..., future.chunk.size = 1), after a warm-up that starts the
## workers. With STARBURST_BENCH_EMULATOR (the emulator's URL), also: object-store
## requests per future in steady state. Large shared globals: shared.R.
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

emulator <- Sys.getenv("STARBURST_BENCH_EMULATOR", "")
emulator_stats <- function() {
  con <- url(paste0(emulator, "/_starburst/stats"))
  on.exit(close(con))
  jsonlite::fromJSON(paste(readLines(con, warn = FALSE), collapse = ""))
}
s3_requests <- function(stats) unlist(stats$requests$s3)

worker_stats <- NULL
aws_requests <- NULL
plans <- list(
  sequential = function() plan(sequential),
  multisession = function() plan(multisession, workers = 2),
  starburst = function() plan(starburst, workers = 2, backend = "local")
)
if (nzchar(emulator)) {
  plans[["starburst-aws"]] <- function() plan(starburst, workers = 2, backend = "aws")
}
res <- vapply(names(plans), function(p) {
  before <- if (p == "starburst-aws") s3_requests(emulator_stats())
  v <- measure(plans[[p]])
  if (p == "starburst") worker_stats <<- starburst:::session_info(starburst:::current_session())
  if (p == "starburst-aws") {
    after <- s3_requests(emulator_stats())
    ops <- union(names(before), names(after))
    d <- vapply(ops, function(o) {
      a <- if (o %in% names(after)) after[[o]] else 0
      b <- if (o %in% names(before)) before[[o]] else 0
      a - b
    }, numeric(1))
    n <- futures * reps + max(20L, futures %/% 4L) + 4L
    aws_requests <<- list(per_future = sum(d) / n, ops = sort(d[d > 0] / n, decreasing = TRUE), n = n)
  }
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

if (!is.null(aws_requests)) {
  cat(sprintf("\naws backend on the emulator: S3 requests per future over %d futures (client + workers, warm-up and polling included): %.2f (target <= 6: %s)\n",
              aws_requests$n, aws_requests$per_future, if (aws_requests$per_future <= 6) "met" else "NOT met"))
  for (o in names(aws_requests$ops)) cat(sprintf("    %-28s %6.2f\n", o, aws_requests$ops[[o]]))
  lists <- grep("LIST", names(aws_requests$ops), value = TRUE)
  cat(sprintf("  LIST requests in the hot path: %s\n", if (length(lists) == 0L) "none" else paste(lists, collapse = ", ")))
}
