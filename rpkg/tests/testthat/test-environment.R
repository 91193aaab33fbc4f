## Environment images: the spec of this R session, its tag, the build through
## docker (a stand-in CLI), reuse from the registry

local_source_tarball <- function(.env = parent.frame()) {
  path <- file.path(withr::local_tempdir(.local_envir = .env), "starburst_0.1.0.tar.gz")
  writeBin(charToRaw("not really a tarball, but hashed like one"), path)
  withr::local_envvar(STARBURST_SOURCE = path, .local_envir = .env)
  path
}

test_that("the environment's tag is stable and changes with the packages", {
  local_source_tarball()
  withr::local_options(starburst.renv_lock = tempfile())   # no lockfile
  environment_spec()   # loads what computing a spec needs, so the session's packages stay put
  a <- environment_spec()
  b <- environment_spec()
  expect_identical(a$tag, b$tag)
  expect_match(a$tag, "^r[0-9.]+-amd64-[0-9a-f]{16}$")
  ## an extra package (not shipped with R) makes another image
  ip <- utils::installed.packages()
  unloaded <- setdiff(rownames(ip)[is.na(ip[, "Priority"])], c(loadedNamespaces(), "starburst"))
  skip_if(length(unloaded) == 0L, "every installed package is loaded")
  extra <- environment_spec(packages = unloaded[1])
  expect_false(identical(extra$tag, a$tag))
  expect_match(environment_spec(arch = "arm64")$tag, "-arm64-")
})

test_that("a renv.lock decides the packages when there is one", {
  local_source_tarball()
  lock <- withr::local_tempfile(fileext = ".lock")
  writeLines('{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli", "Version": "3.6.3", "Source": "Repository", "Repository": "CRAN"}}}', lock)
  withr::local_options(starburst.renv_lock = lock)
  spec <- environment_spec()
  expect_match(spec$tag, "^r4.4.1-amd64-")
  expect_equal(spec$packages, 1L)
  writeLines('{"R": {"Version": "4.4.1", "Repositories": [{"Name": "CRAN", "URL": "https://cloud.r-project.org"}]},
               "Packages": {"cli": {"Package": "cli"}}}', lock)
  err <- expect_error(environment_spec(), class = "starburst_invalid_argument")
  expect_match(conditionMessage(err), "Packages.cli.Version")
})

test_that("without starburst's source tarball no image can be built, with a message that says what to do", {
  withr::local_envvar(STARBURST_SOURCE = "")
  withr::local_options(starburst.source = NULL)
  err <- expect_error(environment_spec(), class = "starburst_source_missing")
  expect_match(conditionMessage(err), "STARBURST_SOURCE")
  expect_error(environment_spec(source = "/nonexistent/starburst_0.1.0.tar.gz"),
               class = "starburst_source_missing")
})
