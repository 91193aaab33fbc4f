## The troubleshooting vignette has one section per condition class starburst
## signals. This test collects the classes from the sources (R code, the Rust
## binding, and the facade's error classes when the workspace is there) and
## fails for any class no section heading of vignettes/troubleshooting.Rmd
## names. It needs the package sources: in an installed-package run (R CMD
## check) the vignettes directory is not beside the tests, and it is skipped.

vignette_dir <- function() testthat::test_path("../../vignettes")

## Classes named by string literals in R code: every "starburst_*" string
## constant, except list fields (x[["starburst_worker"]]), the classes of
## returned objects (those with a method registered in NAMESPACE, such as
## print.starburst_cost) and the few internal classes below, which are never
## signalled.
not_signalled <- c(
  "starburst_blob_ref",   # placeholder for a global sent as a blob (payload.R)
  "starburst_node",       # stand-in node of future's cluster registry (session.R)
  "starburst_rust_error"  # how the Rust binding returns an error to sb_check(), which signals its class
)

r_source_classes <- function(r_dir, namespace_file) {
  s3_classes <- character(0L)
  if (file.exists(namespace_file)) {
    ns <- readLines(namespace_file, warn = FALSE)
    s3 <- regmatches(ns, regexec("^S3method\\([^,]+,\\s*([A-Za-z0-9_.]+)\\)", ns))
    s3_classes <- vapply(Filter(function(m) length(m) == 2L, s3), `[[`, "", 2L)
  }
  found <- character(0L)
  for (file in list.files(r_dir, pattern = "[.][Rr]$", full.names = TRUE)) {
    pd <- utils::getParseData(parse(file, keep.source = TRUE))
    pd <- pd[pd$terminal, , drop = FALSE]
    pd <- pd[order(pd$line1, pd$col1), , drop = FALSE]
    hit <- which(pd$token == "STR_CONST" & grepl("^[\"']starburst_[a-z_]+[\"']$", pd$text))
    ## x[["starburst_worker"]]: a field, not a class
    hit <- hit[!(hit > 1L & pd$token[pmax(hit - 1L, 1L)] == "LBB")]
    found <- c(found, gsub("[\"']", "", pd$text[hit]))
  }
  setdiff(unique(found), c(s3_classes, not_signalled))
}

## Classes the Rust side gives errors: rust_error("starburst_...", ...) in the
## binding, and the facade's Error::class() (crates/starburst/src/error.rs)
rust_source_classes <- function(files) {
  found <- character(0L)
  for (file in files[file.exists(files)]) {
    text <- paste(readLines(file, warn = FALSE), collapse = "\n")
    m <- regmatches(text, gregexpr("\"starburst_[a-z_]+\"", text))[[1L]]
    found <- c(found, gsub("\"", "", m))
  }
  setdiff(unique(found), not_signalled)
}

## The classes that have a section in an R Markdown file: a heading (outside
## code blocks) that is the class name alone, as in "### `starburst_worker_lost`"
documented_classes <- function(rmd) {
  lines <- readLines(rmd, warn = FALSE)
  marker <- grepl("^\\s*(```|~~~)", lines)
  in_code <- (cumsum(marker) %% 2L == 1L) | marker
  pattern <- "^#{1,6}\\s+`(starburst_[a-z_]+)`\\s*$"
  headings <- lines[!in_code & grepl(pattern, lines)]
  unique(sub(pattern, "\\1", headings))
}

test_that("troubleshooting.Rmd has a section for every condition class starburst signals", {
  vignettes <- vignette_dir()
  testthat::skip_if_not(dir.exists(vignettes), "the vignettes are not beside the tests (installed package)")
  pkg <- testthat::test_path("../..")
  rmd <- file.path(vignettes, "troubleshooting.Rmd")
  expect_true(file.exists(rmd))

  r_classes <- r_source_classes(file.path(pkg, "R"), file.path(pkg, "NAMESPACE"))
  rust_files <- c(file.path(pkg, "src", "rust", "src", "lib.rs"),
                  testthat::test_path("../../../crates/starburst/src/error.rs"))
  rust_classes <- rust_source_classes(rust_files)
  ## Every failure cause of the engine, through the table that maps it
  engine_classes <- unname(starburst:::failure_classes)

  signalled <- sort(unique(c(r_classes, rust_classes, engine_classes)))
  ## The collection itself works: a few classes that must be among them
  expect_true(all(c("starburst_invalid_argument", "starburst_worker_lost", "starburst_budget_exceeded",
                    "starburst_session_closed", "starburst_unknown_task") %in% signalled))

  documented <- documented_classes(rmd)
  missing <- setdiff(signalled, documented)
  expect(length(missing) == 0L,
         sprintf("troubleshooting.Rmd has no section heading for %s; add one (the message, the cause, the fix), or, for a class that is never signalled, add it to not_signalled in this test",
                 paste(missing, collapse = ", ")))

  ## Nor does it document classes that no longer exist
  stale <- setdiff(documented, c(signalled, "starburst_notice"))
  expect(length(stale) == 0L,
         sprintf("troubleshooting.Rmd has sections for classes starburst no longer signals: %s",
                 paste(stale, collapse = ", ")))
})
