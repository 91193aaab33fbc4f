#' starburst: a future backend for AWS Fargate and local workers
#'
#' Use [starburst()] with [future::plan()]. See `?starburst` for every
#' argument, option, and environment variable, with defaults.
#'
#' @keywords internal
"_PACKAGE"
