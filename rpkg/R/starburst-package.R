#' starburst: a future backend for AWS Fargate and local workers
#'
#' Use [starburst()] with [future::plan()]. See `?starburst` for every
#' argument, option, and environment variable, with defaults.
#'
#' @docType package
#' @name starburst-package
#' @aliases starburst-package
#' @keywords internal
NULL
