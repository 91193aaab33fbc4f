## A CRAN-like repository of Linux binary packages made from the R packages
## installed on this machine (Debian's r-cran-*), standing in for Posit Package
## Manager's binaries in tests: each installed package directory (what a binary
## package holds, DESCRIPTION with `Built:`) is tarred into src/contrib, with
## the packages it needs (Depends, Imports, LinkingTo) that are not part of R.
##
##   Rscript xtask/r/local_repo.R <dir> <package>...
args <- commandArgs(trailingOnly = TRUE)
dir <- args[[1L]]
wanted <- args[-1L]
ip <- installed.packages()
base <- rownames(ip)[ip[, "Priority"] %in% "base"]
deps <- tools::package_dependencies(wanted, db = ip, which = c("Depends", "Imports", "LinkingTo"),
                                    recursive = TRUE)
all <- sort(setdiff(unique(c(wanted, unlist(deps))), c(base, "R")))
missing <- setdiff(all, rownames(ip))
if (length(missing)) stop("not installed here: ", paste(missing, collapse = ", "))
contrib <- file.path(dir, "src", "contrib")
dir.create(contrib, recursive = TRUE, showWarnings = FALSE)
for (p in all) {
  version <- ip[p, "Version"]
  file <- file.path(normalizePath(contrib), sprintf("%s_%s.tar.gz", p, version))
  if (file.exists(file)) next
  owd <- setwd(ip[p, "LibPath"])
  status <- system2("tar", c("-czf", shQuote(file), p))
  setwd(owd)
  if (status != 0L) stop("tar of ", p, " failed")
}
tools::write_PACKAGES(contrib, type = "source")
cat(sprintf("%d packages in %s\n", length(all), contrib))
