## `cargo xtask site`: builds the pkgdown site of the staged package (argument 1) into
## argument 2, offline. The package is the one installed in R_LIBS (no temporary install);
## examples and articles run against it.
args <- commandArgs(trailingOnly = TRUE)
stopifnot(length(args) == 2)
# No look-up of the package on CRAN and Bioconductor for the home page's links.
options(pkgdown.internet = FALSE)
# downlit links a package named in code (library(doFuture)) that is not installed here to its
# CRAN page, for which it downloads CRAN's package database: offline, such a name stays plain.
utils::assignInNamespace(
  "CRAN_urls",
  function() data.frame(Package = character(), URL = character()),
  ns = "downlit"
)
pkgdown::build_site(
  args[[1]],
  override = list(destination = args[[2]]),
  install = FALSE,
  new_process = FALSE,
  devel = FALSE,
  preview = FALSE
)
