## The main job: a bootstrap of a regression slope, run in parallel through
## plan(starburst) on the local backend, then the same run sequentially to show
## that the results are identical (parallel-safe L'Ecuyer streams) and how much
## faster it was. About 20 s of work sequentially: long enough that starting
## the workers (an R process each, about a second) does not hide the speed-up.
suppressPackageStartupMessages({
  library(future)
  library(future.apply)
  library(starburst)
})
args <- commandArgs(trailingOnly = TRUE)
workers <- if (length(args) >= 1) as.integer(args[[1]]) else 2L

set.seed(2026)
n <- 20000
x <- rnorm(n)
y <- 1.5 + 2 * x + rt(n, df = 3)          # heavy-tailed noise
chunks <- 40L                              # futures
per_chunk <- 250L                          # resamples per future

boot_chunk <- function(i) {
  vapply(seq_len(per_chunk), function(b) {
    idx <- sample.int(n, n, replace = TRUE)
    fit <- lm.fit(cbind(1, x[idx]), y[idx])
    fit$coefficients[[2]]
  }, numeric(1))
}

run <- function() {
  t <- system.time(est <- unlist(future_lapply(seq_len(chunks), boot_chunk, future.seed = 42L,
                                               future.chunk.size = 2L)))
  list(est = est, seconds = t[["elapsed"]])
}

plan(starburst, workers = workers, backend = "local")
par <- run()
plan(sequential)
timeline <- starburst_timeline()
seq <- run()

ci <- quantile(par$est, c(0.025, 0.975))
cat(sprintf("bootstrap of the slope: %d resamples in %d futures\n", length(par$est), chunks))
cat(sprintf("  estimate %.4f, 95%% percentile CI [%.4f, %.4f]\n", mean(par$est), ci[[1]], ci[[2]]))
cat(sprintf("  starburst (local, %d workers): %.2f s\n", workers, par$seconds))
cat(sprintf("  sequential:                   %.2f s  (speed-up %.2fx)\n", seq$seconds, seq$seconds / par$seconds))
cat(sprintf("  identical to the sequential run: %s\n", identical(par$est, seq$est)))
cat("\nWhere the parallel run's time went (starburst_timeline(); plot() draws it):\n")
print(timeline)
if (!identical(par$est, seq$est)) quit(status = 1)
