.onLoad <- function(libname, pkgname) {
  ## future (>= 1.40.0) has the FutureBackend API; older versions use the
  ## legacy Future API (run(), resolved(), result(), getExpression())
  .state[["backend_api"]] <- utils::packageVersion("future") >= "1.40.0"
  if (use_backend_api()) register_backend_api(asNamespace(pkgname))
}

.onUnload <- function(libpath) {
  session_close(current_session(), reason = "the starburst package was unloaded")
  close_retired("the starburst package was unloaded")
  remove_task_callback()
}
