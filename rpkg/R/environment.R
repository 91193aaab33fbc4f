## Environment images: the worker image built from this R environment (R
## version, platform, packages and their versions, starburst itself), tagged
## with the hash of that spec, reused from ECR when it exists.

#' Build (or find) the worker image of your R environment
#'
#' AWS workers run a container image made from your R environment: the R
#' version, the CPU architecture, the packages and their versions, and the
#' starburst package itself (built from its source, so the worker binary
#' matches this client). The packages are those of `renv.lock` when the
#' working directory has one (option `starburst.renv_lock` names another
#' file); otherwise the session's attached and loaded packages plus
#' `packages`, pinned to the versions installed here and fetched from the
#' first repository of `getOption("repos")`.
#'
#' The image tag is a hash of that spec: an image whose tag already exists in
#' the set-up's ECR repository is reused (unless `force`). Otherwise the build
#' context (a Dockerfile rendered from starburst's template on
#' `rocker/r-ver:<R version>`, a pinned `renv.lock`, starburst's source
#' tarball) is built and pushed with `docker buildx`, showing its progress.
#' The image is recorded in the set-up file, and `plan(starburst)` makes sure
#' the image of the current environment exists before it starts workers.
#'
#' While it builds, docker's output is shown on the console (standard
#' error); option `starburst.progress = FALSE` silences it.
#'
#' Building needs Docker with the buildx plugin (environment variable
#' `STARBURST_DOCKER` names another docker CLI) and starburst's source
#' tarball: argument `source`, option `starburst.source` or environment
#' variable `STARBURST_SOURCE` (`cargo xtask dist` makes it).
#'
#' @param packages Extra packages to put in the image (names of installed
#'   packages), when there is no `renv.lock`.
#' @param force Build and push even if the image exists.
#' @param arch `"x86_64"` or `"arm64"`. Default: the `arch` of
#'   [starburst_config()], else `"x86_64"`.
#' @param source Path of starburst's source tarball (`starburst_<version>.tar.gz`).
#'
#' @return Invisibly, a list with `image` (`repository:tag`), `tag` and
#'   `built` (`TRUE` when built now).
#'
#' @examples
#' \dontrun{
#' starburst_rebuild_environment(packages = c("data.table", "xgboost"))
#' }
#' @seealso [starburst_setup()]
#' @export
starburst_rebuild_environment <- function(packages = NULL, force = FALSE, arch = NULL, source = NULL) {
  if (!is_flag(force)) {
    invalid_argument("Argument 'force' must be TRUE or FALSE, not %s", deparse_short(force))
  }
  setup <- read_aws_setup()
  if (is.null(setup$repository)) {
    starburst_abort(sprintf("The AWS set-up (%s) has no image repository: its image %s is managed outside starburst. Run starburst_setup() to create a set-up that builds images.",
                            aws_setup_file(), sQuote(setup$image)),
                    class = "starburst_environment_unavailable")
  }
  res <- ensure_environment(setup, packages = packages, arch = arch, source = source,
                            force = force, require_source = TRUE)
  invisible(res)
}


## The spec (JSON) and tag of this R environment
environment_spec <- function(packages = NULL, arch = NULL, source = NULL) {
  source <- source_tarball(source)
  if (is.null(source)) {
    starburst_abort("Building a worker image needs starburst's source tarball: pass source =, or set option 'starburst.source' or environment variable STARBURST_SOURCE to the path of starburst_<version>.tar.gz (cargo xtask dist makes it).",
                    class = "starburst_source_missing")
  }
  arch <- check_arch(arch %||% preference("arch", "x86_64"))
  lock <- getOption("starburst.renv_lock", "renv.lock")
  lock_json <- if (is.character(lock) && length(lock) == 1L && file.exists(lock)) {
    paste(readLines(lock, warn = FALSE), collapse = "\n")
  }
  pkgs <- session_packages(packages)
  repos <- package_repositories()
  r_version <- paste(R.version$major, R.version$minor, sep = ".")
  out <- sb_environment_spec(lock_json, r_version, arch, names(pkgs), unname(pkgs),
                             names(repos), unname(repos), source,
                             as.character(utils::packageVersion("starburst")))
  parsed <- jsonlite::fromJSON(out, simplifyVector = FALSE)
  list(json = as.character(jsonlite::toJSON(parsed$spec, auto_unbox = TRUE, null = "null")),
       tag = parsed$tag, packages = length(parsed$spec$packages))
}

source_tarball <- function(source = NULL) {
  source <- source %||% getOption("starburst.source", NULL)
  if (is.null(source)) {
    env <- Sys.getenv("STARBURST_SOURCE", "")
    if (nzchar(env)) source <- env
  }
  if (is.null(source)) return(NULL)
  check_string(source, "source")
  if (!file.exists(source)) {
    starburst_abort(sprintf("starburst's source tarball %s does not exist.", sQuote(source)),
                    class = "starburst_source_missing")
  }
  normalizePath(source)
}

## name = version of the attached and loaded packages plus 'packages'
session_packages <- function(packages = NULL) {
  if (!is.null(packages) && (!is.character(packages) || anyNA(packages))) {
    invalid_argument("Argument 'packages' must be package names, not %s", deparse_short(packages))
  }
  si <- utils::sessionInfo()
  loaded <- c(si$otherPkgs, si$loadedOnly)
  versions <- vapply(loaded, function(d) as.character(d$Version), "")
  for (p in setdiff(packages, names(versions))) {
    v <- tryCatch(as.character(utils::packageVersion(p)), error = function(e) {
      invalid_argument("Package %s is not installed, so it cannot be put in the worker image", sQuote(p))
    })
    versions[[p]] <- v
  }
  versions[order(names(versions))]
}

## name = URL of the package repositories, '@CRAN@' resolved
package_repositories <- function() {
  repos <- getOption("repos")
  repos <- repos[!is.na(repos) & nzchar(repos)]
  repos[repos == "@CRAN@"] <- "https://cloud.r-project.org"
  if (length(repos) == 0L) repos <- c(CRAN = "https://cloud.r-project.org")
  if (is.null(names(repos))) names(repos) <- rep("", length(repos))
  unnamed <- !nzchar(names(repos))
  names(repos)[unnamed] <- paste0("repo", which(unnamed))
  repos
}


## Makes sure the image of this environment is in the set-up's repository and
## recorded in the set-up file; returns list(image, tag, built). Without a
## source tarball (require_source = FALSE) the recorded image is used as is.
ensure_environment <- function(setup, packages = NULL, arch = NULL, source = NULL,
                               force = FALSE, require_source = FALSE) {
  if (!require_source && is.null(source_tarball(source))) {
    if (length(setup$image) == 1L && nzchar(setup$image)) {
      return(list(image = setup$image, tag = sub("^.*:", "", setup$image), built = FALSE))
    }
    starburst_abort(sprintf("The AWS set-up (%s) has no worker image yet, and none can be built: set environment variable STARBURST_SOURCE (or option 'starburst.source') to starburst's source tarball, then run starburst_rebuild_environment().",
                            aws_setup_file()),
                    class = "starburst_environment_unavailable")
  }
  spec <- environment_spec(packages = packages, arch = arch, source = source)
  image <- paste0(setup$repository, ":", spec$tag)
  known <- .state[["images"]] %||% character(0L)
  if (!force && image %in% known && identical(setup$image, image)) {
    return(list(image = image, tag = spec$tag, built = FALSE))
  }
  workdir <- file.path(tools::R_user_dir("starburst", which = "cache"), "builds")
  ## Live build output on stderr (option starburst.progress = FALSE silences it)
  progress <- if (isFALSE(getOption("starburst.progress", TRUE))) function(line) NULL else
    function(line) cat("starburst: ", line, "\n", sep = "", file = stderr())
  res <- sb_environment_image(spec$json, setup$repository, setup$region, setup$endpoint_url,
                              workdir, force, progress)
  res <- jsonlite::fromJSON(res, simplifyVector = FALSE)
  .state[["images"]] <- unique(c(known, res$image))
  if (!identical(setup$image, res$image)) {
    path <- aws_setup_file()
    file_setup <- jsonlite::fromJSON(path, simplifyVector = FALSE)
    file_setup$image <- res$image
    write_json_file(file_setup, path)
  }
  list(image = res$image, tag = spec$tag, built = isTRUE(res$built))
}
