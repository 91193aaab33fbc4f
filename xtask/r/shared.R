## cargo xtask bench: large globals shared by many futures, against
## multisession in the same run, on 2 workers.
##
## - N futures (N = 40 and 100) that each read one 100 MB global (random
##   doubles: no compression helps) through future_lapply(future.chunk.size = 1);
##   a new global for every repetition, so each repetition pays its transfer.
##   Goal: starburst local <= 0.1 x multisession's time; bytes uploaded <= 1.05 x
##   the global; each worker reads it at most once (on the emulator: bytes the
##   workers downloaded <= 2 x the global).
## - 1,000 futures, each with its own 1 MB global: nothing got slower.
## With STARBURST_BENCH_EMULATOR (the emulator's URL) starburst's aws backend
## on the emulator runs too.
##
## Rscript xtask/r/shared.R [reps] [sizes, e.g. 40,100]
suppressPackageStartupMessages({
  library(future)
  library(future.apply)
  library(starburst)
})
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args) >= 1) as.integer(args[[1]]) else 3L
sizes <- if (length(args) >= 2) as.integer(strsplit(args[[2]], ",")[[1]]) else c(40L, 100L)
mb <- 100

emulator <- Sys.getenv("STARBURST_BENCH_EMULATOR", "")
emulator_bytes <- function() {
  if (!nzchar(emulator)) return(c(up = NA, down = NA))
  con <- url(paste0(emulator, "/_starburst/stats"))
  on.exit(close(con))
  stats <- jsonlite::fromJSON(paste(readLines(con, warn = FALSE), collapse = ""))
  c(up = stats$bytes_received$s3 %||% 0, down = stats$bytes_sent$s3 %||% 0)
}
`%||%` <- function(a, b) if (is.null(a)) b else a

plans <- list(
  multisession = function() plan(multisession, workers = 2),
  starburst = function() plan(starburst, workers = 2, backend = "local")
)
if (nzchar(emulator)) {
  plans[["starburst-aws"]] <- function() plan(starburst, workers = 2, backend = "aws")
}

uploaded <- function(p) {
  if (p == "starburst-aws") return(emulator_bytes())
  if (p != "starburst") return(c(up = NA, down = NA))
  info <- starburst:::session_info(starburst:::current_session())
  c(up = info$blob_bytes_uploaded %||% NA, down = NA)
}

## One repetition: a fresh global, then n futures that read it. As in a
## script: the global and the function live in the global environment. (A
## function defined inside another function carries that function's local
## variables in its environment, which starburst serializes with it for every
## future; see the "in a function" case.)
shared_once <- function(n) {
  assign("x", stats::runif(mb * 2^20 / 8), envir = globalenv())
  fun <- eval(quote(function(i) x[i] + length(x)), globalenv())
  t <- system.time(v <- future_lapply(seq_len(n), fun, future.chunk.size = 1))[["elapsed"]]
  stopifnot(isTRUE(all.equal(unlist(v), x[seq_len(n)] + length(x))))
  rm("x", envir = globalenv())
  t
}

## The same, with the global a local variable of the function that makes the
## futures
shared_in_function <- function(n) {
  x <- stats::runif(mb * 2^20 / 8)
  t <- system.time(v <- future_lapply(seq_len(n), function(i) x[i] + length(x),
                                      future.chunk.size = 1))[["elapsed"]]
  stopifnot(isTRUE(all.equal(unlist(v), x[seq_len(n)] + length(x))))
  t
}

## 1,000 futures, each with its own 1 MB global
small_once <- function(n = 1000L) {
  t <- system.time({
    fs <- lapply(seq_len(n), function(i) {
      y <- stats::runif(2^20 / 8)
      future(sum(y))
    })
    v <- value(fs)
  })[["elapsed"]]
  stopifnot(length(v) == n)
  t
}

results <- list()
for (p in names(plans)) {
  plans[[p]]()
  invisible(future_lapply(1:4, identity, future.chunk.size = 1))   # warm-up: workers started
  for (n in sizes) {
    b0 <- uploaded(p)
    times <- vapply(seq_len(reps), function(r) shared_once(n), numeric(1))
    b1 <- uploaded(p)
    results[[length(results) + 1L]] <- data.frame(
      plan = p, case = sprintf("%d futures x 1 shared %d MB global", n, mb), n = n,
      seconds = median(times), min = min(times), max = max(times),
      up = (b1[["up"]] - b0[["up"]]) / reps / (mb * 2^20),
      down = (b1[["down"]] - b0[["down"]]) / reps / (mb * 2^20))
  }
  n <- min(sizes)
  b0 <- uploaded(p)
  times <- vapply(seq_len(reps), function(r) shared_in_function(n), numeric(1))
  b1 <- uploaded(p)
  results[[length(results) + 1L]] <- data.frame(
    plan = p, case = sprintf("%d x %d MB, in a function", n, mb), n = -n,
    seconds = median(times), min = min(times), max = max(times),
    up = (b1[["up"]] - b0[["up"]]) / reps / (mb * 2^20),
    down = (b1[["down"]] - b0[["down"]]) / reps / (mb * 2^20))
  times <- vapply(seq_len(reps), function(r) small_once(), numeric(1))
  results[[length(results) + 1L]] <- data.frame(
    plan = p, case = "1000 futures x own 1 MB global", n = 1000L,
    seconds = median(times), min = min(times), max = max(times), up = NA, down = NA)
  plan(sequential)
}
res <- do.call(rbind, results)
peer <- res[res$plan == "multisession", c("case", "seconds")]
res$ratio <- res$seconds / peer$seconds[match(res$case, peer$case)]

cat(sprintf("\nshared globals, 2 workers, median of %d (min-max), R %s, future %s\n",
            reps, getRversion(), packageVersion("future")))
cat(sprintf("  %-36s %-14s %8s %15s %16s %14s\n", "case", "plan", "seconds", "min-max", "vs multisession",
            "uploaded/down"))
for (i in seq_len(nrow(res))) {
  r <- res[i, ]
  bytes <- if (is.na(r$up)) "" else if (is.na(r$down)) sprintf("%.3fx", r$up) else sprintf("%.3fx / %.2fx", r$up, r$down)
  cat(sprintf("  %-36s %-14s %8.2f %7.2f-%-7.2f %15.3fx %14s\n", r$case, r$plan, r$seconds, r$min, r$max,
              r$ratio, bytes))
}
cat("  (uploaded: bytes stored per repetition / the global; down: bytes the workers downloaded / the global, 2 workers)\n")
local <- res[res$plan == "starburst" & res$n > 0 & res$n != 1000L, ]
cat(sprintf("  goal: starburst local <= 0.1x multisession: %s (%s)\n",
            if (all(local$ratio <= 0.1)) "met" else "NOT met",
            paste(sprintf("%.3fx at N = %d", local$ratio, local$n), collapse = ", ")))
up <- res$up[!is.na(res$up) & res$n > 0]
cat(sprintf("  goal: uploaded <= 1.05x the global: %s\n", if (all(up <= 1.05)) "met" else "NOT met"))
aws <- res[res$plan == "starburst-aws" & res$n > 0 & res$n != 1000L, ]
if (nrow(aws)) {
  cat(sprintf("  goal: each worker reads it at most once (downloaded <= 2x): %s\n",
              if (all(aws$down <= 2.05)) "met" else "NOT met"))
}
