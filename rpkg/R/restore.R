## Restoring an environment's packages on a worker or in an image build: the
## one piece of code both environment modes run (inside the runtime image),
##
##   Rscript -e 'starburst:::restore_environment("manifest.json", "/opt/starburst/library")'
##
## The manifest is written by the engine (EnvironmentSpec::manifest in
## crates/starburst-provision): the packages pinned by name and version, each
## from a repository or a GitHub commit; the repositories as binary URLs
## (Posit Package Manager's Linux binaries for the runtime's distribution at
## the environment's snapshot); the distribution; and where system
## requirements are looked up. Steps:
##
## 1. system requirements of the packages that are missing, from the package
##    manager's API, installed with apt-get (when the process may);
## 2. repository packages with install.packages() from the binary
##    repositories, in one call (so dependencies resolve together);
## 3. a package whose installed version is not the pinned one is installed
##    again from the repository's archive (<repo>/src/contrib/Archive/...);
## 4. GitHub packages from their commit's tarball (R CMD INSTALL);
## 5. every pinned package is checked at its pinned version; anything that is
##    not is reported by name in one error (class starburst_environment_error)
##    and the process exits non-zero.
##
## Packages already installed at their pinned version (in the runtime's own
## library) are not installed again. With `keep_system_packages` (sync mode)
## the .deb files of the system requirements stay in <lib>/.sysreqs/debs, so
## that workers which download the library install them with dpkg, offline.

restore_environment <- function(manifest, lib, quiet = FALSE, keep_system_packages = FALSE) {
  m <- jsonlite::fromJSON(manifest, simplifyVector = FALSE)
  say <- function(...) if (!quiet) cat("starburst: ", ..., "\n", sep = "")
  dir.create(lib, recursive = TRUE, showWarnings = FALSE)
  .libPaths(c(lib, .libPaths()))
  pinned <- vapply(m$packages, function(p) p$version, "")
  names(pinned) <- vapply(m$packages, function(p) p$name, "")
  sources <- stats::setNames(lapply(m$packages, function(p) p$source), names(pinned))
  repos <- unlist(m$repositories)
  missing <- names(pinned)[!vapply(names(pinned), function(p) installed_at(p, pinned[[p]]), NA)]
  say(sprintf("environment: %d packages pinned, %d to install", length(pinned), length(missing)))
  if (length(missing) == 0L) return(invisible(character(0)))
  from_repo <- missing[vapply(sources[missing], function(s) identical(s$type, "repository"), NA)]
  from_github <- setdiff(missing, from_repo)

  install_system_requirements(m, from_repo, say, if (keep_system_packages) file.path(lib, ".sysreqs", "debs"))
  if (length(from_repo)) {
    t0 <- Sys.time()
    ## Binary repositories serve installed packages (Built: R ...) in
    ## src/contrib; type "source" installs those as they are.
    utils::install.packages(from_repo, lib = lib, repos = repos, type = "source",
                            dependencies = c("Depends", "Imports", "LinkingTo"),
                            Ncpus = if (nzchar(Sys.which("make"))) max(1L, parallel::detectCores()) else 1L,
                            quiet = quiet)
    say(sprintf("installed %d packages from %s in %.1f s", length(from_repo),
                paste(repos, collapse = ", "), as.numeric(Sys.time() - t0, units = "secs")))
    for (p in from_repo) {
      if (!installed_at(p, pinned[[p]])) install_archived(p, pinned[[p]], repos, lib, say)
    }
  }
  for (p in from_github) install_github_commit(p, sources[[p]], m$github_url, lib, say)

  wrong <- names(pinned)[!vapply(names(pinned), function(p) installed_at(p, pinned[[p]]), NA)]
  if (length(wrong)) {
    have <- vapply(wrong, function(p) {
      v <- tryCatch(as.character(utils::packageVersion(p)), error = function(e) "not installed")
      sprintf("%s %s (got %s)", p, pinned[[p]], v)
    }, "")
    starburst_abort(sprintf("The environment could not be restored: %s. Check that these versions exist for R %s on the repositories %s, or pin versions that do (renv::snapshot() after updating them).",
                            paste(have, collapse = "; "), getRversion(), paste(repos, collapse = ", ")),
                    class = "starburst_environment_error")
  }
  invisible(missing)
}

## TRUE when `package` is installed at `version` (1.8-11 and 1.8.11 are the
## same version)
installed_at <- function(package, version) {
  v <- tryCatch(utils::packageDescription(package)$Version, error = function(e) NULL,
                warning = function(w) NULL)
  !is.null(v) && isTRUE(package_version(v) == package_version(version))
}

## apt-get install of what the package manager says the packages need on this
## distribution (its sysreqs API: /__api__/repos/<repo>/sysreqs)
install_system_requirements <- function(m, packages, say, keep = NULL) {
  api <- m$sysreqs
  if (is.null(api) || length(packages) == 0L) return(invisible())
  url <- sprintf("%s?all=false&distribution=%s&release=%s&%s", api$url,
                 utils::URLencode(m$distribution$name), utils::URLencode(m$distribution$release),
                 paste0("pkgname=", packages, collapse = "&"))
  tmp <- tempfile(fileext = ".json")
  on.exit(unlink(tmp))
  ok <- tryCatch(utils::download.file(url, tmp, quiet = TRUE, mode = "wb") == 0L,
                 error = function(e) FALSE, warning = function(w) FALSE)
  if (!ok) {
    say(sprintf("system requirements: %s did not answer; installing packages without them", api$url))
    return(invisible())
  }
  reqs <- jsonlite::fromJSON(tmp, simplifyVector = FALSE)$requirements
  debs <- unique(unlist(lapply(reqs, function(r) r$requirements$packages)))
  if (length(debs) == 0L) return(invisible())
  say(sprintf("system requirements: %s", paste(debs, collapse = " ")))
  can_apt <- nzchar(Sys.which("apt-get")) && identical(unname(Sys.info()[["effective_user"]]), "root")
  if (!can_apt) {
    say("system requirements: not root or no apt-get here; assuming they are present")
    return(invisible())
  }
  run <- function(args) {
    status <- system2("apt-get", args, stdout = if (isTRUE(m$verbose)) "" else FALSE)
    if (!identical(status, 0L)) {
      starburst_abort(sprintf("apt-get %s failed (status %s) while installing the system requirements %s.",
                              args[[1L]], status, paste(debs, collapse = " ")),
                      class = "starburst_environment_error")
    }
  }
  Sys.setenv(DEBIAN_FRONTEND = "noninteractive")
  run(c("update", "-qq"))
  ## With `keep`, the .deb files go there (an archive directory of our own is
  ## never cleaned by the image's apt hooks)
  cache <- if (!is.null(keep)) {
    dir.create(file.path(keep, "partial"), recursive = TRUE, showWarnings = FALSE)
    paste0("-oDir::Cache::archives=", keep)
  }
  run(c("install", "-y", "-qq", "--no-install-recommends", cache, debs))
  if (!is.null(keep)) unlink(file.path(keep, c("partial", "lock")), recursive = TRUE)
  ## apt's package lists and caches are 100 MB that an image would carry for nothing
  system2("apt-get", "clean")
  unlink(Sys.glob("/var/lib/apt/lists/*"), recursive = TRUE)
}

install_archived <- function(package, version, repos, lib, say) {
  for (repo in repos) {
    url <- sprintf("%s/src/contrib/Archive/%s/%s_%s.tar.gz", sub("/+$", "", repo), package, package, version)
    file <- file.path(tempdir(), basename(url))
    got <- tryCatch(utils::download.file(url, file, quiet = TRUE, mode = "wb") == 0L,
                    error = function(e) FALSE, warning = function(w) FALSE)
    if (got) {
      say(sprintf("%s %s from %s", package, version, url))
      utils::install.packages(file, lib = lib, repos = NULL, type = "source", quiet = TRUE)
      unlink(file)
      if (installed_at(package, version)) return(invisible(TRUE))
    }
  }
  invisible(FALSE)
}

install_github_commit <- function(package, source, github_url, lib, say) {
  base <- github_url %||% "https://codeload.github.com"
  url <- sprintf("%s/%s/%s/tar.gz/%s", sub("/+$", "", base), source$user, source$repo, source$sha)
  file <- file.path(tempdir(), sprintf("%s-%s.tar.gz", package, source$sha))
  got <- tryCatch(utils::download.file(url, file, quiet = TRUE, mode = "wb") == 0L,
                  error = function(e) FALSE, warning = function(w) FALSE)
  if (!got) {
    starburst_abort(sprintf("Package %s: could not download GitHub commit %s/%s@%s from %s.",
                            package, source$user, source$repo, source$sha, url),
                    class = "starburst_environment_error")
  }
  say(sprintf("%s from GitHub %s/%s@%s", package, source$user, source$repo, substr(source$sha, 1L, 12L)))
  utils::install.packages(file, lib = lib, repos = NULL, type = "source", quiet = TRUE)
  unlink(file)
}
