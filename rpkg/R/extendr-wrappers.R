# The R side of the Rust binding (rpkg/src/rust/src/lib.rs); kept in step with it by hand:
# one function per exported Rust function. Rust never throws into R: a failure comes back as
# an object of class "starburst_rust_error", which sb_check() signals as a classed condition.

#' @useDynLib starburst, .registration = TRUE
NULL

sb_check <- function(x) {
  if (inherits(x, "starburst_rust_error")) {
    cls <- unique(c(x[["class"]], "starburst_error"))
    stop(structure(
      class = c(cls, "error", "condition"),
      list(message = x[["message"]], call = sys.call(-1L))
    ))
  }
  x
}

sb_session_new <- function(config_json) sb_check(.Call(wrap__sb_session_new, config_json))

sb_blob_put <- function(session, content) {
  sb_check(.Call(wrap__sb_blob_put, session, content))
}

sb_submit <- function(session, payload, blobs, label) {
  sb_check(.Call(wrap__sb_submit, session, payload, blobs, label))
}

sb_identity <- function(x) .Call(wrap__sb_identity, x)

sb_collect <- function(session, task, timeout) {
  sb_check(.Call(wrap__sb_collect, session, task, as.numeric(timeout)))
}

sb_failure_causes <- function() .Call(wrap__sb_failure_causes)

sb_release <- function(session, tasks) invisible(sb_check(.Call(wrap__sb_release, session, as.character(tasks))))

sb_cancel <- function(session, tasks) invisible(sb_check(.Call(wrap__sb_cancel, session, as.character(tasks))))

sb_session_info <- function(session) sb_check(.Call(wrap__sb_session_info, session))

sb_session_workers <- function(session) sb_check(.Call(wrap__sb_session_workers, session))

sb_worker_log <- function(session, worker, n) {
  sb_check(.Call(wrap__sb_worker_log, session, as.character(worker), as.numeric(n)))
}

sb_session_close <- function(session) invisible(sb_check(.Call(wrap__sb_session_close, session)))

sb_has_aws <- function() .Call(wrap__sb_has_aws)

sb_session_timeline <- function(session) sb_check(.Call(wrap__sb_session_timeline, session))

sb_validate_size <- function(millicpu, memory_mib) {
  .Call(wrap__sb_validate_size, as.numeric(millicpu), as.numeric(memory_mib))
}

sb_check_seconds <- function(name, value) {
  .Call(wrap__sb_check_seconds, as.character(name), as.numeric(value))
}

sb_setup_workers <- function(config_json, stop) {
  sb_check(.Call(wrap__sb_setup_workers, config_json, isTRUE(stop)))
}

sb_session_swept <- function(session) sb_check(.Call(wrap__sb_session_swept, session))

sb_setup_plan <- function(options_json, region, endpoint) {
  sb_check(.Call(wrap__sb_setup_plan, options_json, region, endpoint))
}

sb_check_permissions <- function(options_json, region, endpoint) {
  sb_check(.Call(wrap__sb_check_permissions, options_json, region, endpoint))
}

sb_setup_apply <- function(plan_json, endpoint, assign_public_ip, progress) {
  sb_check(.Call(wrap__sb_setup_apply, plan_json, endpoint, assign_public_ip, progress))
}

sb_teardown_plan <- function(setup_id, region, endpoint) {
  sb_check(.Call(wrap__sb_teardown_plan, setup_id, region, endpoint))
}

sb_teardown <- function(resources_json, region, endpoint, progress) {
  invisible(sb_check(.Call(wrap__sb_teardown, resources_json, region, endpoint, progress)))
}

sb_runtime_spec <- function(json) sb_check(.Call(wrap__sb_runtime_spec, json))

sb_environment_spec <- function(lock_json, r_version, arch, names, versions, repo_names, repo_urls,
                                base_json) {
  sb_check(.Call(wrap__sb_environment_spec, lock_json, r_version, arch, as.character(names),
                 as.character(versions), as.character(repo_names), as.character(repo_urls),
                 base_json))
}

sb_environment_ensure <- function(request_json, region, endpoint, progress) {
  sb_check(.Call(wrap__sb_environment_ensure, request_json, region, endpoint, progress))
}

sb_session_cost <- function(session) sb_check(.Call(wrap__sb_session_cost, session))

sb_quota_status <- function(region, endpoint) sb_check(.Call(wrap__sb_quota_status, region, endpoint))

sb_quota_fit <- function(region, endpoint, capacity, millicpu, memory_mib, workers) {
  sb_check(.Call(wrap__sb_quota_fit, region, endpoint, capacity, as.numeric(millicpu),
                 as.numeric(memory_mib), as.numeric(workers)))
}

sb_quota_request <- function(region, endpoint, code, desired, history) {
  sb_check(.Call(wrap__sb_quota_request, region, endpoint, code, as.numeric(desired), history))
}

sb_quota_refresh <- function(region, endpoint, history) {
  sb_check(.Call(wrap__sb_quota_refresh, region, endpoint, history))
}

sb_estimate <- function(sample_secs, tasks, workers, millicpu, memory_mib, arch, region, startup_secs) {
  sb_check(.Call(wrap__sb_estimate, as.numeric(sample_secs), as.numeric(tasks), as.numeric(workers),
                 as.numeric(millicpu), as.numeric(memory_mib), arch, region, as.numeric(startup_secs)))
}
