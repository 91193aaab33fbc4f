## A large global is serialized and stored once per session, and kept in the
## workers' R processes: what counts as "the same" value, and the edge cases

session_counts <- function() {
  s <- starburst:::current_session()
  info <- starburst:::sb_session_info(s[["ptr"]])
  c(serialized = s[["globals_serialized"]], reused = s[["globals_reused"]],
    uploaded = info[["blobs_uploaded"]])
}

counts_since <- function(before) session_counts() - before

test_that("the identity of a value: the same object, not an equal one; never for what can change in place", {
  id <- starburst:::sb_identity
  x <- stats::runif(100)
  expect_identical(id(x), id(x))
  y <- x
  expect_identical(id(y), id(x))          ## the same object
  expect_false(identical(id(x + 0), id(x)))  ## an equal one is another object
  df <- data.frame(a = 1:3, b = letters[1:3])
  expect_type(id(df), "character")
  expect_type(id(list(a = 1, env = globalenv(), ns = asNamespace("stats"), f = sum)), "character")
  ## A closure or a model made at top level refers to the global environment
  ## (and a function's source reference, when R keeps it, to a fixed srcfile)
  expect_type(id(eval(quote(function(x) x + 1), globalenv())), "character")
  expect_type(id(eval(parse(text = "function(x) x + 1", keep.source = TRUE)[[1]], globalenv())),
              "character")
  fit <- eval(quote(stats::lm(mpg ~ wt, data = datasets::mtcars)), globalenv())
  expect_type(id(fit), "character")
  ## ... made in a function, to that function's environment, which travels
  expect_null(id(stats::lm(mpg ~ wt, data = datasets::mtcars)))
  expect_null(id(new.env()))
  expect_null(id(list(a = 1, e = new.env())))
  expect_null(id(local({ k <- 1; function() k })))       ## a closure over local state
  expect_null(id(structure(list(a = 1:3), class = c("data.table", "data.frame"))))
  expect_null(id(list(nested = list(structure(list(), class = "data.table")))))
  ## A list deeper than the walk goes: no identity, not an error
  deep <- list()
  for (i in 1:20000) deep <- list(deep)
  expect_null(id(deep))
})

test_that("a large global shared by many futures is serialized and stored once", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000)
  x <- stats::runif(1e4)
  before <- session_counts()
  fs <- lapply(1:6, function(i) future(sum(x) + i))
  expect_equal(unlist(value(fs)), sum(x) + 1:6)
  expect_equal(counts_since(before), c(serialized = 1, reused = 5, uploaded = 1))
})

test_that("a changed value is another object and is sent anew; the old one still works", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000)
  x <- stats::runif(1e4)
  expect_equal(value(future(x[1])), x[1])
  before <- session_counts()
  y <- x
  y[1] <- -1                      ## a modified copy
  expect_identical(value(future(y[1])), -1)
  x[2] <- 99                      ## modified "in place": the session holds x, so R copies
  expect_identical(value(future(x[2])), 99)
  attr(x, "note") <- "changed"    ## attributes too
  expect_identical(value(future(attr(x, "note"))), "changed")
  expect_equal(counts_since(before), c(serialized = 3, reused = 0, uploaded = 3))
})

test_that("environments and closures over local state are sent with their current contents", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000)
  e <- new.env()
  e$v <- stats::runif(1e4)
  expect_equal(value(future(e$v[1])), e$v[1])
  e$v[1] <- -5
  expect_identical(value(future(e$v[1])), -5)
  f <- local({ k <- stats::runif(1e4); function() k[1] })
  expect_equal(value(future(f())), f())
  environment(f)$k[1] <- -7
  expect_identical(value(future(f())), -7)
  expect_identical(session_counts()[["reused"]], 0)
})

test_that("ALTREP vectors give their values, before and after R expands them", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000)
  v <- sample.int(2e5)
  s <- as.character(v)          ## a deferred string vector, serialized as its numbers
  before <- session_counts()
  expect_identical(value(future(s[c(1, 2e5)])), as.character(v[c(1, 2e5)]))
  invisible(s[[7]])             ## expands one element in place, same value
  expect_identical(value(future(s[c(7, 2e5)])), as.character(v[c(7, 2e5)]))
  expect_equal(counts_since(before), c(serialized = 1, reused = 1, uploaded = 1))
  s[3] <- "three"
  expect_identical(value(future(s[1:3])), c(as.character(v[1:2]), "three"))
  n <- 1:3e6                    ## compact: 3e6 integers, a few bytes serialized
  expect_identical(value(future(n[3e6])), 3000000L)
})

test_that("values dropped and recreated are never taken for the old ones, within any budget", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000, starburst.reuse_globals = 1)
  for (i in 1:15) {
    x <- stats::runif(1e4)
    expect_equal(value(future(sum(x))), sum(x))
    rm(x)
    gc()
  }
  ## The budget keeps only the newest
  s <- starburst:::current_session()
  expect_length(ls(s[["sent"]]), 1L)
})

test_that("starburst.reuse_globals = FALSE serializes every time, and bad values are refused", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000, starburst.reuse_globals = FALSE)
  x <- stats::runif(1e4)
  before <- session_counts()
  fs <- lapply(1:3, function(i) future(sum(x)))
  expect_equal(unlist(value(fs)), rep(sum(x), 3))
  ## Serialized each time, stored once (the same content)
  expect_equal(counts_since(before), c(serialized = 3, reused = 0, uploaded = 1))
  withr::local_options(starburst.reuse_globals = "yes")
  expect_error(future(sum(x)), class = "starburst_invalid_argument")
})

test_that("a remembered blob the session no longer holds is serialized and stored again", {
  local_starburst(workers = 2)
  withr::local_options(starburst.blob_threshold = 1000)
  x <- stats::runif(1e4)
  expect_equal(value(future(sum(x))), sum(x))
  s <- starburst:::current_session()
  ## As if a worker had found the blob lost: the engine no longer knows it
  key <- starburst:::sb_identity(x)
  entry <- s[["sent"]][[key]]
  entry[["hash"]] <- strrep("ab", 32L)
  assign(key, entry, envir = s[["sent"]])
  expect_error(starburst:::sb_submit(s[["ptr"]], serialize(1, NULL), entry[["hash"]], NA_character_),
               class = "starburst_blob_unknown")
  before <- session_counts()
  expect_equal(value(future(sum(x) + 1)), sum(x) + 1)
  expect_equal(counts_since(before), c(serialized = 1, reused = 1, uploaded = 0))
})

test_that("a future that changes a kept global does not change it for the next futures", {
  local_starburst(workers = 1)
  withr::local_options(starburst.blob_threshold = 1000)
  x <- c(1, stats::runif(1e4))
  first <- value(future({ x[1] <- -1; x[1] }))
  expect_identical(first, -1)
  expect_identical(value(lapply(1:3, function(i) future(x[1]))), list(1, 1, 1))
})
