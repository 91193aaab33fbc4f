## Worker environments. Workers run a *runtime* image (R, starburst's R package
## and worker, starburst's dependencies: once per starburst build, R version and
## architecture) and the *environment* of this R session on it: the packages of
## renv.lock, or the session's attached and loaded ones, pinned to their
## versions and restored from binaries (Posit Package Manager for the runtime's
## distribution) by starburst:::restore_environment() (restore.R). In sync mode
## the workers restore them from a library archive in the session bucket; in
## image mode they are frozen into an image built on the runtime. See
## ARCHITECTURE.md, "Worker environments".

#' Build (or find) the worker environment of your R session
#'
#' AWS workers run your R environment: the R version, the CPU architecture and
#' the packages with their versions. The packages are those of `renv.lock`
#' when the working directory has one (option `starburst.renv_lock` names
#' another file); otherwise the session's attached and loaded packages plus
#' `packages`, pinned to the versions installed here. Workers install them as
#' binaries (Posit Package Manager's Linux builds for the runtime's
#' distribution, with their system libraries), never compiling starburst.
#'
#' Two modes (argument `mode`, option `starburst.environment`):
#' \describe{
#'   \item{`"sync"` (default)}{Workers start from the runtime image and
#'     restore the packages from a library archive in the session bucket,
#'     keyed by the environment's hash: the first worker that needs it builds
#'     it, the others wait for it, later workers and sessions download it. No
#'     image is built for the environment.}
#'   \item{`"image"`}{The environment is built into an image on the runtime,
#'     tagged with its hash and kept in the set-up's ECR repository.}
#' }
#'
#' The runtime is the published one for this starburst and R version when
#' option `starburst.runtime_image` names it; otherwise it is built once for
#' the set-up's repository from starburst's binary package for Linux (option
#' `starburst.runtime_package` or environment variable
#' `STARBURST_RUNTIME_PACKAGE`; on Linux the installed package itself is
#' used) on `rocker/r-ver:<R version>` (option `starburst.runtime_base`).
#' Images are built by Docker with buildx or podman on this machine, or, on a
#' machine with neither, by the set-up's AWS CodeBuild project
#' (`starburst_setup(cloud_builder = TRUE)`), which builds in your account and
#' pushes to its repository while its build log is shown here (option
#' `starburst.builder`: `"docker"`, `"podman"` or `"codebuild"`; by default
#' the first of them available). In sync mode with a published runtime,
#' nothing is built at all.
#'
#' @param packages Extra packages to put in the environment (names of
#'   installed packages), when there is no `renv.lock`.
#' @param force Build and push even what exists.
#' @param arch `"x86_64"` or `"arm64"`. Default: the `arch` of
#'   [starburst_config()], else `"x86_64"`.
#' @param mode `"sync"` or `"image"`. Default: option
#'   `starburst.environment`, else `"sync"`.
#'
#' @return Invisibly, a list with `image` (what workers run), `runtime_image`,
#'   `tag` (the environment's hash), `mode` and `built` (images built now).
#'
#' @examples
#' \dontrun{
#' starburst_rebuild_environment(packages = c("data.table", "xgboost"))
#' starburst_rebuild_environment(mode = "image")
#' }
#' @seealso [starburst_setup()]
#' @export
starburst_rebuild_environment <- function(packages = NULL, force = FALSE, arch = NULL, mode = NULL) {
  if (!is_flag(force)) {
    invalid_argument("Argument 'force' must be TRUE or FALSE, not %s", deparse_short(force))
  }
  setup <- read_aws_setup()
  if (is.null(setup$repository)) {
    starburst_abort(sprintf("The AWS set-up (%s) has no image repository: its image %s is managed outside starburst. Run starburst_setup() to create a set-up that builds images.",
                            aws_setup_file(), sQuote(setup$image)),
                    class = "starburst_environment_unavailable")
  }
  res <- ensure_environment(setup, packages = packages, arch = arch, force = force, mode = mode)
  invisible(res)
}

environment_mode <- function(mode = NULL) {
  mode <- mode %||% getOption("starburst.environment", "sync")
  if (!(is.character(mode) && length(mode) == 1L && mode %in% c("sync", "image"))) {
    invalid_argument("The environment mode must be \"sync\" or \"image\", not %s", deparse_short(mode))
  }
  mode
}

r_version_string <- function() paste(R.version$major, R.version$minor, sep = ".")

minor_version <- function(v) paste(strsplit(v, ".", fixed = TRUE)[[1L]][1:2], collapse = ".")

## The runtime this environment runs on: list(source = list(published = image)
## | list(build = <RuntimeSpec>), id = image or tag, distribution)
runtime_choice <- function(arch, r_version = r_version_string()) {
  distribution <- runtime_distribution(r_version)
  published <- getOption("starburst.runtime_image")
  if (!is.null(published)) {
    check_string(published, "option starburst.runtime_image")
    return(list(source = list(published = published), id = published, distribution = distribution))
  }
  package <- runtime_package(arch)
  base <- getOption("starburst.runtime_base", sprintf("rocker/r-ver:%s", r_version))
  repository <- getOption("starburst.runtime_repository",
                          sprintf("%s/cran/__linux__/%s/latest", package_managers()[[1L]], distribution$codename))
  input <- list(r_version = r_version, arch = arch, base = base, distribution = distribution,
                repository = repository,
                starburst_version = as.character(utils::packageVersion("starburst")),
                package = package)
  out <- jsonlite::fromJSON(sb_runtime_spec(as.character(jsonlite::toJSON(input, auto_unbox = TRUE))),
                            simplifyVector = FALSE)
  list(source = list(build = out$spec), id = out$tag, distribution = distribution)
}

## The distribution of the runtime's base: option starburst.runtime_distribution
## ("ubuntu/24.04/noble"), else rocker/r-ver's for this R version
runtime_distribution <- function(r_version) {
  given <- getOption("starburst.runtime_distribution")
  if (!is.null(given)) {
    parts <- strsplit(given, "/", fixed = TRUE)[[1L]]
    if (length(parts) != 3L) {
      invalid_argument("Option starburst.runtime_distribution must be name/release/codename, e.g. \"ubuntu/24.04/noble\", not %s",
                       deparse_short(given))
    }
    return(list(name = parts[[1L]], release = parts[[2L]], codename = parts[[3L]]))
  }
  v <- package_version(r_version)
  if (v >= "4.4.0") list(name = "ubuntu", release = "24.04", codename = "noble")
  else list(name = "ubuntu", release = "22.04", codename = "jammy")
}

package_managers <- function() {
  getOption("starburst.package_managers",
            c("https://packagemanager.posit.co", "https://p3m.dev", "https://packagemanager.rstudio.com"))
}

## starburst's binary package for the runtime: given, or the installed package
## packed (on Linux for the same architecture)
runtime_package <- function(arch) {
  given <- getOption("starburst.runtime_package", Sys.getenv("STARBURST_RUNTIME_PACKAGE", ""))
  if (nzchar(given)) {
    if (!file.exists(given)) {
      starburst_abort(sprintf("starburst's binary package %s does not exist.", sQuote(given)),
                      class = "starburst_runtime_unavailable")
    }
    return(normalizePath(given))
  }
  machine <- if (identical(R.version$arch, "aarch64")) "arm64" else R.version$arch
  if (!identical(.Platform$OS.type, "unix") || !grepl("linux", R.version$os) || !identical(machine, arch)) {
    starburst_abort(sprintf("No runtime image for starburst %s on R %s (%s): set option starburst.runtime_image to a published runtime, or starburst.runtime_package to starburst's binary package for linux/%s (a release asset, or built with templates/package.Dockerfile).",
                            utils::packageVersion("starburst"), r_version_string(), arch, arch),
                    class = "starburst_runtime_unavailable")
  }
  pack_installed_package()
}

## The installed starburst as a binary package (what R CMD INSTALL --build
## makes), its shared objects stripped when strip is available; cached by
## the installed files' modification time
pack_installed_package <- function() {
  installed <- system.file(package = "starburst")
  desc <- utils::packageDescription("starburst")
  platform <- R.version$platform
  dir <- file.path(tools::R_user_dir("starburst", which = "cache"), "runtime")
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  stamp <- format(as.numeric(file.mtime(file.path(installed, "DESCRIPTION"))), nsmall = 0)
  out <- file.path(dir, sprintf("starburst_%s_R_%s.tar.gz", desc$Version, platform))
  stamp_file <- paste0(out, ".stamp")
  if (file.exists(out) && file.exists(stamp_file) && identical(readLines(stamp_file, warn = FALSE), stamp)) {
    return(out)
  }
  staging <- tempfile("starburst-pack-")
  dir.create(staging)
  on.exit(unlink(staging, recursive = TRUE), add = TRUE)
  file.copy(installed, staging, recursive = TRUE)
  copy <- file.path(staging, basename(installed))
  if (nzchar(Sys.which("strip"))) {
    for (f in c(Sys.glob(file.path(copy, "libs", "*.so")), file.path(copy, "bin", "starburst-worker"))) {
      if (file.exists(f)) system2("strip", c("--strip-unneeded", shQuote(f)))
    }
  }
  tmp <- paste0(out, ".tmp")
  status <- system2("tar", c("-C", shQuote(staging), "-czf", shQuote(tmp), basename(installed)))
  if (!identical(status, 0L)) {
    starburst_abort("Packing the installed starburst package for the runtime image failed (tar).",
                    class = "starburst_runtime_unavailable")
  }
  file.rename(tmp, out)
  writeLines(stamp, stamp_file)
  out
}

## Who builds images: option starburst.builder (or STARBURST_BUILDER), else
## docker when there is one (or STARBURST_DOCKER names one), else podman, else
## the set-up's CodeBuild project (starburst_setup(cloud_builder = TRUE))
builder_choice <- function(setup) {
  engine <- getOption("starburst.builder", Sys.getenv("STARBURST_BUILDER", ""))
  if (!nzchar(engine)) {
    engine <- if (nzchar(Sys.getenv("STARBURST_DOCKER")) || nzchar(Sys.which("docker"))) "docker"
      else if (nzchar(Sys.getenv("STARBURST_PODMAN")) || nzchar(Sys.which("podman"))) "podman"
      else if (!is.null(setup$build_project)) "codebuild"
      else "docker"   ## fails with a message that says what to install, when a build is needed
  }
  if (!is.character(engine) || length(engine) != 1L || !engine %in% c("docker", "podman", "codebuild")) {
    invalid_argument("Option starburst.builder must be \"docker\", \"podman\" or \"codebuild\", not %s",
                     deparse_short(engine))
  }
  network <- Sys.getenv("STARBURST_BUILD_NETWORK", "")
  cloud <- if (identical(engine, "codebuild") && !is.null(setup$build_project)) {
    list(project = setup$build_project, bucket = setup$bucket,
         prefix = paste0(sub("/+$", "", setup$prefix %||% "starburst"), "/builds"))
  }
  list(engine = engine, program = NULL, network = if (nzchar(network)) network, cloud = cloud)
}

## The spec (JSON) and tag of this R environment on `runtime`
environment_spec <- function(packages = NULL, arch = NULL, runtime = NULL) {
  arch <- check_arch(arch %||% preference("arch", "x86_64"))
  lock <- getOption("starburst.renv_lock", "renv.lock")
  has_lock <- is.character(lock) && length(lock) == 1L && file.exists(lock)
  lock_json <- if (has_lock) paste(readLines(lock, warn = FALSE), collapse = "\n")
  pkgs <- session_packages(packages)
  repos <- package_repositories()
  r_version <- r_version_string()
  ## Without a lockfile, the session's packages as one (each with where it
  ## came from, so GitHub packages are carried and local ones refused)
  lock_json <- lock_json %||% session_lock_json(pkgs, repos, r_version)
  runtime <- runtime %||% list(id = "runtime", distribution = runtime_distribution(r_version))
  base <- list(runtime = runtime$id, distribution = runtime$distribution,
               snapshot = getOption("starburst.snapshot") %||%
                 snapshot_date(if (has_lock) lock, if (!has_lock) pkgs))
  out <- sb_environment_spec(lock_json, r_version, arch, names(pkgs), unname(pkgs),
                             names(repos), unname(repos),
                             as.character(jsonlite::toJSON(base, auto_unbox = TRUE)))
  parsed <- jsonlite::fromJSON(out, simplifyVector = FALSE)
  list(spec = parsed$spec, tag = parsed$tag, packages = length(parsed$spec$packages))
}

## The Posit Package Manager snapshot (a date) that holds the pinned versions
## as they were when they were chosen, so that the same environment restores
## the same binaries on any day: a lockfile's date (renv::snapshot() writes it
## when the versions are fixed), else the newest CRAN publication date among the
## session's packages `pkgs` (name = version). "latest" when there is nothing to
## date, or when that date is today (its snapshot may not be published yet).
snapshot_date <- function(lock = NULL, pkgs = NULL) {
  date <- if (!is.null(lock)) {
    as.Date(file.mtime(lock), tz = "UTC")
  } else {
    published <- vapply(names(pkgs), function(p) {
      d <- suppressWarnings(utils::packageDescription(p, fields = "Date/Publication"))
      if (is.character(d) && !is.na(d)) substr(d, 1L, 10L) else NA_character_
    }, "")
    published <- suppressWarnings(as.Date(published[!is.na(published)], optional = TRUE))
    if (length(published) && !all(is.na(published))) max(published, na.rm = TRUE)
  }
  if (is.null(date) || is.na(date) || date >= as.Date(Sys.time(), tz = "UTC")) "latest"
  else format(date, "%Y-%m-%d")
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

## A renv.lock (JSON text) of the session's packages `pkgs` (name = version),
## each with its source read from its DESCRIPTION: GitHub (remotes/pak record
## RemoteType, RemoteUsername, RemoteRepo and RemoteSha), a repository (its
## Repository field, mapped to the repository of that name in `repos`, else the
## first), Bioconductor (biocViews), else Local. Packages shipped with R are
## left out.
session_lock_json <- function(pkgs, repos, r_version) {
  records <- list()
  for (p in names(pkgs)) {
    d <- suppressWarnings(utils::packageDescription(p))
    if (!is.list(d) || !is.null(d$Priority) && d$Priority %in% c("base", "recommended")) next
    rec <- list(Package = p, Version = pkgs[[p]])
    if (identical(tolower(d$RemoteType %||% ""), "github") && !is.null(d$RemoteSha)) {
      rec <- c(rec, list(Source = "GitHub", RemoteUsername = d$RemoteUsername %||% "",
                         RemoteRepo = d$RemoteRepo %||% "", RemoteSha = d$RemoteSha))
    } else if (!is.null(d$Repository)) {
      repo <- if (d$Repository %in% names(repos)) d$Repository else names(repos)[[1L]]
      rec <- c(rec, list(Source = "Repository", Repository = repo))
    } else if (!is.null(d$biocViews)) {
      rec <- c(rec, list(Source = "Bioconductor"))
    } else {
      rec <- c(rec, list(Source = "Local"))
    }
    records[[p]] <- rec
  }
  lock <- list(R = list(Version = r_version,
                        Repositories = unname(Map(function(n, u) list(Name = n, URL = u), names(repos), unname(repos)))),
               Packages = if (length(records)) records else structure(list(), names = character(0)))
  as.character(jsonlite::toJSON(lock, auto_unbox = TRUE))
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


## Makes sure what workers of this environment start from exists (the
## runtime, and in image mode the environment's image) and records the image in
## the set-up file; returns list(image, runtime_image, tag, mode, manifest
## (JSON text), built)
ensure_environment <- function(setup, packages = NULL, arch = NULL, force = FALSE, mode = NULL) {
  mode <- environment_mode(mode)
  arch <- check_arch(arch %||% preference("arch", "x86_64"))
  runtime <- runtime_choice(arch)
  spec <- environment_spec(packages = packages, arch = arch, runtime = runtime)
  ## Binaries are built per R major.minor: the environment's R must be the runtime's
  built_for <- runtime$source$build$r_version
  if (!is.null(built_for) && !identical(minor_version(spec$spec$r_version), minor_version(built_for))) {
    starburst_abort(sprintf("The environment pins R %s (renv.lock) but the runtime built from this session runs R %s: workers install binaries for one R version. Snapshot the lockfile with R %s, or set option starburst.runtime_image to a runtime of R %s.",
                            spec$spec$r_version, built_for, minor_version(built_for), minor_version(spec$spec$r_version)),
                    class = "starburst_invalid_argument")
  }
  key <- paste(mode, spec$tag, runtime$id, sep = "|")
  known <- .state[["environments"]] %||% list()
  if (!force && !is.null(known[[key]])) return(known[[key]])
  request <- list(spec = spec$spec, runtime = runtime$source, mode = mode, builder = builder_choice(setup),
                  managers = as.list(package_managers()), repository = setup$repository,
                  workdir = file.path(tools::R_user_dir("starburst", which = "cache"), "builds"),
                  force = isTRUE(force))
  ## Live build output on stderr (option starburst.progress = FALSE silences it)
  progress <- if (isFALSE(getOption("starburst.progress", TRUE))) function(line) NULL else
    function(line) cat("starburst: ", line, "\n", sep = "", file = stderr())
  res <- sb_environment_ensure(as.character(jsonlite::toJSON(request, auto_unbox = TRUE, null = "null")),
                               setup$region, setup$endpoint_url, progress)
  res <- jsonlite::fromJSON(res, simplifyVector = FALSE)
  out <- list(image = res$image, runtime_image = res$runtime_image, tag = res$tag, mode = mode,
              manifest = as.character(jsonlite::toJSON(res$manifest, auto_unbox = TRUE, null = "null")),
              built = unlist(res$built) %||% character(0L))
  known[[key]] <- out
  .state[["environments"]] <- known
  if (!identical(setup$image, out$image)) {
    path <- aws_setup_file()
    file_setup <- jsonlite::fromJSON(path, simplifyVector = FALSE)
    file_setup$image <- out$image
    write_json_file(file_setup, path)
  }
  out
}
