## The task payload: what R hands to sb_submit() and what worker_child()
## receives.
##
## payload = serialize(list(protocol, n_blobs, body = serialize(task)))
##
## The outer list holds only an integer and a raw vector, so the R worker can
## always read it and learn how many 'B' (blob) frames follow, even when the
## task itself cannot be unserialized there (say, a global refers to a
## package the worker lacks); the inner failure is then reported as the
## future's error instead of breaking the frame stream.
##
## task = list(
##   api         = "legacy" (future < 1.40: an expression from getExpression())
##                 or "backend" (future >= 1.40: the data for future:::evalFuture()),
##   expr        = <expression>              (legacy),
##   globals     = <named list>              (legacy; blob-sized ones replaced),
##   data        = <evalFuture() data>       (backend; blob-sized globals replaced),
##   blob_names  = <names of the globals sent as blobs, in blob order>,
##   immediate   = <condition classes relayed as 'E' frames while running>,
##   gc          = <run gc() after the task>
## )
##
## Globals whose serialized size is above getOption("starburst.blob_threshold")
## (default 1 MB) travel as blobs: the engine stores them content-addressed,
## so a large global shared by many futures is uploaded once per session.
## The session also remembers the values it sent (see remember_sent()): the
## same value in a later future is neither serialized nor hashed again, and
## the worker's R process keeps it in memory (worker_child.R), so it is not
## moved or unserialized again either.

payload_protocol <- 2L

blob_threshold <- function() {
  threshold <- getOption("starburst.blob_threshold", 1024^2)
  if (!is_scalar_number(threshold) || threshold < 0) {
    invalid_argument("Option 'starburst.blob_threshold' must be a non-negative number of bytes, not %s",
                     deparse_short(threshold))
  }
  threshold
}

blob_placeholder <- function(name) {
  structure(list(name = name), class = "starburst_blob_ref")
}

## Splits globals into those kept in the task and those sent as blobs.
## Returns list(globals = <globals, blob-sized ones replaced by placeholders>,
##              blobs = <blob hashes stored in the session; without a session,
##                       the serialized blobs themselves (a list of raw)>,
##              blob_names = <character>)
split_globals <- function(globals, session = NULL, threshold = blob_threshold()) {
  blobs <- list()
  blob_names <- character(0L)
  if (length(globals) == 0L) {
    return(list(globals = globals, blobs = character(0L), blob_names = blob_names))
  }
  budget <- if (is.null(session)) 0 else reuse_budget()
  names <- names(globals)
  attrs <- attributes(globals)
  plain <- unclass(globals)
  for (kk in seq_along(plain)) {
    value <- plain[[kk]]
    check_travels(value, names[kk])
    ## Cheap pre-check: atomic vectors well below the threshold stay
    if (is.atomic(value) && as.numeric(utils::object.size(value)) < threshold / 2) next
    key <- if (budget > 0) sb_identity(value) else NULL
    blob <- if (is.null(key)) NULL else recall_sent(session, key)
    if (is.null(blob)) {
      raw <- serialize(value, connection = NULL, xdr = FALSE)
      if (length(raw) <= threshold) next
      if (is.null(session)) {
        blob <- raw
      } else {
        blob <- sb_blob_put(session[["ptr"]], raw)
        count_global(session, "serialized")
        if (!is.null(key)) remember_sent(session, key, value, blob, length(raw), budget)
      }
      raw <- NULL
    } else {
      count_global(session, "reused")
    }
    blobs[[length(blobs) + 1L]] <- blob
    blob_names <- c(blob_names, names[kk])
    plain[kk] <- list(blob_placeholder(names[kk]))
  }
  attributes(plain) <- attrs
  if (!is.null(session)) blobs <- as.character(unlist(blobs))
  list(globals = plain, blobs = blobs, blob_names = blob_names)
}


## How many bytes (serialized) of the large globals it sent a session keeps
## alive to recognise them in later futures: option starburst.reuse_globals
reuse_budget <- function() {
  opt <- getOption("starburst.reuse_globals", TRUE)
  if (isTRUE(opt)) return(1024^3)
  if (isFALSE(opt)) return(0)
  if (is_scalar_number(opt) && opt >= 0) return(as.numeric(opt))
  invalid_argument("Option 'starburst.reuse_globals' must be TRUE, FALSE or a number of bytes, not %s",
                   deparse_short(opt))
}

## The session keeps each large global it sent, under its identity (see
## sb_identity(): the value's address and the shape of its tree). Holding a
## reference is what makes the identity safe: R copies a value that anything
## else refers to before changing it, so a changed value is a new object, and
## a value kept here is never freed, so its address cannot be reused by
## another while it is remembered. The least recently used ones are dropped
## beyond the budget or beyond 16 values (the newest always stays: a value the
## user dropped costs memory only while it is remembered), and all with the
## session.
max_sent <- 16L

recall_sent <- function(session, key) {
  sent <- session[["sent"]]
  entry <- sent[[key]]
  if (is.null(entry)) return(NULL)
  session[["sent_tick"]] <- session[["sent_tick"]] + 1
  entry[["tick"]] <- session[["sent_tick"]]
  assign(key, entry, envir = sent)
  entry[["hash"]]
}

remember_sent <- function(session, key, value, hash, size, budget) {
  sent <- session[["sent"]]
  session[["sent_tick"]] <- session[["sent_tick"]] + 1
  assign(key, list(value = value, hash = hash, size = size, tick = session[["sent_tick"]]),
         envir = sent)
  keys <- ls(sent, all.names = TRUE, sorted = FALSE)
  sizes <- vapply(keys, function(k) sent[[k]][["size"]], numeric(1L))
  ticks <- vapply(keys, function(k) sent[[k]][["tick"]], numeric(1L))
  rm(list = lru_drop(sizes, ticks, budget, max_sent), envir = sent)
  invisible(NULL)
}

## The names of the least recently used entries to drop so that the others fit
## in `budget` bytes and `max_n` entries (`sizes` and `used`: named alike); the
## most recently used one always stays. The session's memory of sent values
## and the worker's kept values (worker_child.R) both use it.
lru_drop <- function(sizes, used, budget, max_n) {
  newest <- sizes[order(used[names(sizes)], decreasing = TRUE)]
  over <- cumsum(newest) > budget | seq_along(newest) > max_n
  over[1L] <- FALSE
  names(newest)[over]
}

## Forgets every remembered global (their blobs are sent again when used)
forget_sent <- function(session) {
  session[["sent"]] <- new.env(parent = emptyenv())
  invisible(NULL)
}

count_global <- function(session, what) {
  name <- paste0("globals_", what)
  session[[name]] <- session[[name]] + 1L
}

## Globals that cannot work in another R process are refused before anything
## is sent: a connection (file, url, socket) or an external pointer (a
## handle into compiled code, such as a database connection) arrives on the
## worker as a dead handle
check_travels <- function(value, name) {
  if (inherits(value, "connection")) {
    invalid_argument("Global '%s' is a connection (%s), which cannot travel to a worker's R process. Open it inside the future instead (e.g. con <- file(path) in the future's code).",
                     name, paste(class(value), collapse = "/"))
  }
  if (typeof(value) == "externalptr") {
    invalid_argument("Global '%s' is an external pointer (%s), a handle into this R process's memory that cannot travel to a worker. Create it inside the future instead (e.g. open database connections there).",
                     name, paste(class(value), collapse = "/"))
  }
  invisible(value)
}

## Puts blob values back in place of their placeholders (used by the worker)
restore_globals <- function(globals, blob_names, values) {
  if (length(blob_names) == 0L) return(globals)
  attrs <- attributes(globals)
  plain <- unclass(globals)
  for (kk in seq_along(blob_names)) {
    plain[blob_names[kk]] <- list(values[[kk]])
  }
  attributes(plain) <- attrs
  plain
}

## Native byte order (xdr = FALSE): every platform R and Fargate run on is
## little-endian, and unserialize() reads either order, so nothing is lost and
## no byte is swapped (a third faster for numeric data)
make_payload <- function(task, blobs) {
  body <- serialize(task, connection = NULL, xdr = FALSE)
  outer <- list(protocol = payload_protocol, n_blobs = length(blobs), body = body)
  serialize(outer, connection = NULL, xdr = FALSE)
}


immediate_condition_classes <- function(future) {
  classes <- attr(future[["conditions"]], "immediateConditionClasses", exact = TRUE)
  if (is.null(classes)) classes <- getOption("future.relay.immediate", "immediateCondition")
  as.character(classes)
}


## future (< 1.40.0): the expression from getExpression() plus the globals
build_legacy_task <- function(future, session = NULL) {
  expr <- getExpression(future)
  globals <- future[["globals"]]
  if (is.null(globals)) globals <- list()
  split <- split_globals(globals, session)
  task <- list(
    api = "legacy",
    expr = expr,
    globals = plain_list(split[["globals"]]),
    blob_names = split[["blob_names"]],
    immediate = immediate_condition_classes(future),
    gc = isTRUE(future[["gc"]])
  )
  list(payload = make_payload(task, split[["blobs"]]), blobs = split[["blobs"]])
}


## future (>= 1.40.0): the data for future:::evalFuture()
build_backend_task <- function(future, session = NULL) {
  getFutureData <- future_internal("getFutureData")
  data <- getFutureData(future, mc.cores = 1L)
  split <- split_globals(data[["core"]][["globals"]], session)
  data[["core"]][["globals"]] <- split[["globals"]]
  task <- list(
    api = "backend",
    data = data,
    blob_names = split[["blob_names"]],
    immediate = as.character(data[["capture"]][["immediateConditionClasses"]]),
    gc = isTRUE(future[["gc"]])
  )
  list(payload = make_payload(task, split[["blobs"]]), blobs = split[["blobs"]])
}


## Builds a future's task (build_legacy_task or build_backend_task) and
## submits it to the session; never waits for a free worker
submit_future <- function(future, session, build) {
  label <- future[["label"]]
  label <- if (is.character(label) && length(label) == 1L) label else NA_character_
  task <- build(future, session)
  id <- tryCatch(sb_submit(session[["ptr"]], task[["payload"]], task[["blobs"]], label),
                 starburst_blob_unknown = function(e) {
    ## A worker found a blob lost from the store (a lifecycle rule, a
    ## deletion): everything is serialized and stored again
    forget_sent(session)
    task <- build(future, session)
    sb_submit(session[["ptr"]], task[["payload"]], task[["blobs"]], label)
  })
  future[["sb_session"]] <- session
  future[["sb_task"]] <- id
  assign(id, future, envir = session[["tasks"]])
  future[["state"]] <- "running"
  count_launched(future)
  invisible(future)
}


plain_list <- function(x) {
  x <- unclass(x)
  attributes(x) <- list(names = names(x))
  x
}


## Internal functions of future that a backend needs
future_internal <- function(name) {
  get(name, envir = asNamespace("future"), mode = "function", inherits = FALSE)
}
