//! The R binding of starburst: one function per operation, each a thin conversion between R
//! values and the facade's [`starburst::Session`]. Errors never unwind into R: each function
//! returns either its value or an object of class `starburst_rust_error` (class, message) that
//! the R wrapper turns into a classed R condition.

use std::time::Duration;

use extendr_api::prelude::*;
use starburst::cloud::TaskId;
use starburst::{Config, Session};

/// The session behind an R external pointer; `None` once closed.
struct Handle(Option<Session>);

fn rust_error(class: &str, message: impl std::fmt::Display) -> Robj {
    let mut l =
        List::from_names_and_values(["class", "message"], [r!(class), r!(message.to_string())])
            .expect("two names, two values")
            .into_robj();
    l.set_class(["starburst_rust_error"])
        .expect("lists take a class");
    l
}

fn facade_error(e: starburst::Error) -> Robj {
    rust_error(e.class(), e)
}

fn with_session<F: FnOnce(&Session) -> Robj>(ptr: Robj, f: F) -> Robj {
    let handle: ExternalPtr<Handle> = match ptr.try_into() {
        Ok(h) => h,
        Err(_) => return rust_error("starburst_invalid_argument", "not a starburst session"),
    };
    match &handle.0 {
        Some(s) => f(s),
        None => rust_error(
            "starburst_session_closed",
            "the starburst session is closed; set the plan again",
        ),
    }
}

fn task_id(id: &str) -> std::result::Result<TaskId, Robj> {
    TaskId::new(id).map_err(|e| rust_error("starburst_unknown_task", e))
}

/// Starts a session from its JSON configuration.
#[extendr]
fn sb_session_new(config_json: &str) -> Robj {
    match Config::from_json(config_json).and_then(Session::start) {
        Ok(s) => ExternalPtr::new(Handle(Some(s))).into(),
        Err(e) => facade_error(e),
    }
}

/// Queues a task.
#[extendr]
fn sb_submit(session: Robj, payload: Raw, blobs: List, label: Robj) -> Robj {
    let payload = bytes::Bytes::copy_from_slice(payload.as_slice());
    let mut parts = Vec::with_capacity(blobs.len());
    for (_, b) in blobs.iter() {
        match Raw::try_from(b) {
            Ok(r) => parts.push(bytes::Bytes::copy_from_slice(r.as_slice())),
            Err(_) => {
                return rust_error(
                    "starburst_invalid_argument",
                    "blobs must be a list of raw vectors",
                );
            }
        }
    }
    // NA (no label) arrives as a string scalar that is NA, not as NULL.
    let label = if label.is_na() {
        None
    } else {
        label.as_str().map(str::to_string)
    };
    with_session(session, |s| match s.submit(payload, parts, label) {
        Ok(id) => r!(id.to_string()),
        Err(e) => facade_error(e),
    })
}

/// A task's state, new events, value or error; waits up to `timeout` seconds.
#[extendr]
fn sb_collect(session: Robj, task: &str, timeout: f64) -> Robj {
    let id = match task_id(task) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let timeout = if timeout.is_finite() && timeout > 0.0 {
        Duration::from_secs_f64(timeout)
    } else {
        Duration::ZERO
    };
    with_session(session, |s| match s.collect(&id, timeout) {
        Ok(c) => {
            let events: Vec<Robj> = c
                .events
                .iter()
                .map(|e| Raw::from_bytes(e).into_robj())
                .collect();
            let value = c
                .value
                .as_ref()
                .map(|v| Raw::from_bytes(v).into_robj())
                .unwrap_or_else(|| ().into());
            let error = match &c.failure {
                Some(f) => List::from_names_and_values(
                    ["class", "message", "log_tail"],
                    [
                        r!(f.class.as_str()),
                        r!(f.message.as_str()),
                        r!(f.log_tail.clone()),
                    ],
                )
                .expect("names match values")
                .into_robj(),
                None => ().into(),
            };
            let worker = c
                .worker
                .as_ref()
                .map(|w| r!(w.as_str()))
                .unwrap_or_else(|| ().into());
            List::from_names_and_values(
                ["state", "events", "value", "error", "worker"],
                [
                    r!(c.state.as_str()),
                    List::from_values(events).into_robj(),
                    value,
                    error,
                    worker,
                ],
            )
            .expect("names match values")
            .into_robj()
        }
        Err(e) => facade_error(e),
    })
}

/// Cancels tasks.
#[extendr]
fn sb_cancel(session: Robj, tasks: Strings) -> Robj {
    let mut ids = Vec::new();
    for t in tasks.iter() {
        match task_id(t.as_str()) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    with_session(session, |s| match s.cancel(&ids) {
        Ok(()) => ().into(),
        Err(e) => facade_error(e),
    })
}

/// Worker and queue counts.
#[extendr]
fn sb_session_info(session: Robj) -> Robj {
    with_session(session, |s| {
        let i = s.info();
        let backend = match s.backend() {
            starburst::Backend::Local => "local",
            starburst::Backend::Aws => "aws",
        };
        List::from_names_and_values(
            [
                "session_id",
                "backend",
                "workers",
                "live",
                "busy",
                "idle",
                "queued",
                "root",
                "completed",
                "mean_roundtrip_ms",
                "mean_worker_ms",
            ],
            [
                r!(i.session_id.to_string()),
                r!(backend),
                r!(i.max_workers as i32),
                r!(i.live as i32),
                r!(i.busy as i32),
                r!((i.live - i.busy) as i32),
                r!(i.queued as i32),
                r!(s.root().display().to_string()),
                r!(i.completed as f64),
                r!(i.mean_roundtrip.as_secs_f64() * 1000.0),
                r!(i.mean_worker_ms),
            ],
        )
        .expect("names match values")
        .into_robj()
    })
}

/// Every worker the session started, oldest first.
#[extendr]
fn sb_session_workers(session: Robj) -> Robj {
    with_session(session, |s| {
        let ids: Vec<String> = s.workers().iter().map(ToString::to_string).collect();
        r!(ids)
    })
}

/// A worker's log: the last `n` lines (all when `n` is not positive), as a list of `time`
/// (seconds since the epoch, `NA` when unknown) and `message`.
#[extendr]
fn sb_worker_log(session: Robj, worker: &str, n: f64) -> Robj {
    let id = match starburst::cloud::WorkerId::new(worker) {
        Ok(id) => id,
        Err(e) => return rust_error("starburst_invalid_argument", e),
    };
    let tail = (n.is_finite() && n > 0.0).then_some(n as usize);
    with_session(session, |s| match s.worker_log(&id, tail) {
        Ok(lines) => {
            let times: Vec<Option<f64>> = lines
                .iter()
                .map(|l| {
                    l.time
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs_f64())
                })
                .collect();
            let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
            List::from_names_and_values(["time", "message"], [r!(times), r!(messages)])
                .expect("names match values")
                .into_robj()
        }
        Err(e) => facade_error(e),
    })
}

/// Stops the session's workers; idempotent.
#[extendr]
fn sb_session_close(session: Robj) -> Robj {
    let mut handle: ExternalPtr<Handle> = match session.try_into() {
        Ok(h) => h,
        Err(_) => return rust_error("starburst_invalid_argument", "not a starburst session"),
    };
    if let Some(s) = handle.0.take() {
        s.close();
    }
    ().into()
}

/// NULL when `millicpu`/`memory_mib` is a Fargate size, else a message naming the valid ones.
#[extendr]
fn sb_validate_size(millicpu: f64, memory_mib: f64) -> Robj {
    let size = starburst::cloud::WorkerSize {
        millicpu: millicpu.round() as u32,
        memory_mib: memory_mib.round() as u32,
    };
    match size.validate_fargate() {
        Ok(()) => ().into(),
        Err(starburst::cloud::Error::InvalidInput { message, .. }) => r!(message),
        Err(e) => r!(e.to_string()),
    }
}

/// A connection for set-up and teardown: `region`/`endpoint` are `NULL` or a string.
fn admin(region: &Robj, endpoint: &Robj) -> std::result::Result<starburst::Admin, Robj> {
    let target = starburst::AwsTarget {
        region: region
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        endpoint_url: endpoint
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    starburst::Admin::connect(&target).map_err(facade_error)
}

fn to_json<T: serde::Serialize>(value: &T) -> Robj {
    match serde_json::to_string(value) {
        Ok(s) => r!(s),
        Err(e) => rust_error("starburst_error", e),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    json: &str,
) -> std::result::Result<T, Robj> {
    serde_json::from_str(json)
        .map_err(|e| rust_error("starburst_invalid_argument", format!("{what}: {e}")))
}

/// Calls the R function `progress` with one argument (a JSON string); an R error in it is
/// reported once, not raised through Rust.
fn notify<T: serde::Serialize>(progress: &Function, value: &T) {
    if let Ok(json) = serde_json::to_string(value)
        && let Err(e) = progress.call(pairlist!(json))
    {
        rprintln!("starburst: progress callback failed: {e}");
    }
}

/// The set-up plan for `options_json` (set-up options), as JSON.
#[extendr]
fn sb_setup_plan(options_json: &str, region: Robj, endpoint: Robj) -> Robj {
    let result = from_json("the set-up options", options_json).and_then(|options| {
        let admin = admin(&region, &endpoint)?;
        admin.plan(&options).map_err(facade_error)
    });
    match result {
        Ok(plan) => to_json(&plan),
        Err(e) => e,
    }
}

/// Applies a plan from `sb_setup_plan()`; `progress` gets each step (JSON). Returns the
/// set-up file's contents and each step's outcome, as JSON.
#[extendr]
fn sb_setup_apply(
    plan_json: &str,
    endpoint: Robj,
    assign_public_ip: bool,
    progress: Function,
) -> Robj {
    let result = from_json::<starburst::provision::setup::SetupPlan>("the set-up plan", plan_json)
        .and_then(|plan| {
            let region = r!(plan.account.region.clone());
            let admin = admin(&region, &endpoint)?;
            let done = admin
                .apply(&plan, &mut |step| notify(&progress, step))
                .map_err(facade_error)?;
            let settings = admin.settings(&done, assign_public_ip);
            Ok(serde_json::json!({ "settings": settings, "applied": done.applied }))
        });
    match result {
        Ok(v) => to_json(&v),
        Err(e) => e,
    }
}

/// What teardown of `setup_id` would delete, in order, as JSON.
#[extendr]
fn sb_teardown_plan(setup_id: &str, region: Robj, endpoint: Robj) -> Robj {
    match admin(&region, &endpoint).and_then(|a| a.teardown_plan(setup_id).map_err(facade_error)) {
        Ok(resources) => to_json(&resources),
        Err(e) => e,
    }
}

/// Deletes the resources (JSON from `sb_teardown_plan()`); `progress` gets each deleted one.
#[extendr]
fn sb_teardown(resources_json: &str, region: Robj, endpoint: Robj, progress: Function) -> Robj {
    let result = from_json::<Vec<starburst::cloud::Resource>>("the resources", resources_json)
        .and_then(|resources| {
            let admin = admin(&region, &endpoint)?;
            admin
                .teardown(&resources, &mut |r| notify(&progress, r))
                .map_err(facade_error)
        });
    match result {
        Ok(()) => ().into(),
        Err(e) => e,
    }
}

/// The environment spec of a worker image and its tag, as JSON `{spec, tag}`: from the text
/// of a `renv.lock` when `lock_json` is a string, else from the session's packages
/// (`names`/`versions`) pinned to the first of the repositories (`repo_names`/`repo_urls`).
#[extendr]
#[allow(clippy::too_many_arguments)]
fn sb_environment_spec(
    lock_json: Robj,
    r_version: &str,
    arch: &str,
    names: Strings,
    versions: Strings,
    repo_names: Strings,
    repo_urls: Strings,
    tarball: &str,
    version: &str,
) -> Robj {
    use starburst::provision::EnvironmentSpec;
    use starburst::provision::image::StarburstSource;
    let result = (|| {
        let arch: starburst::cloud::Arch = from_json("arch", &format!("{arch:?}"))?;
        let source =
            StarburstSource::from_tarball(version, tarball).map_err(|e| facade_error(e.into()))?;
        let spec = match lock_json.as_str() {
            Some(lock) => EnvironmentSpec::from_renv_lock(lock, arch, source),
            None => EnvironmentSpec::from_packages(
                r_version,
                arch,
                names
                    .iter()
                    .zip(versions.iter())
                    .map(|(n, v)| (n.to_string(), v.to_string())),
                repo_names
                    .iter()
                    .zip(repo_urls.iter())
                    .map(|(n, u)| (n.to_string(), u.to_string())),
                source,
            ),
        }
        .map_err(|e| facade_error(e.into()))?;
        let tag = spec.tag();
        Ok(serde_json::json!({ "spec": spec, "tag": tag }))
    })();
    match result {
        Ok(v) => to_json(&v),
        Err(e) => e,
    }
}

/// Makes sure the image of `spec_json` is in `repository` (built with docker buildx when
/// missing, or when `force`); `progress` gets each line of progress. JSON `{image, built}`.
#[extendr]
fn sb_environment_image(
    spec_json: &str,
    repository: &str,
    region: Robj,
    endpoint: Robj,
    workdir: &str,
    force: bool,
    progress: Function,
) -> Robj {
    let result = from_json::<starburst::provision::EnvironmentSpec>(
        "the environment spec",
        spec_json,
    )
    .and_then(|spec| {
        let admin = admin(&region, &endpoint)?;
        let ensured = admin
            .ensure_image(
                &spec,
                repository,
                std::path::Path::new(workdir),
                force,
                &mut |line| {
                    if let Err(e) = progress.call(pairlist!(line)) {
                        rprintln!("starburst: progress callback failed: {e}");
                    }
                },
            )
            .map_err(facade_error)?;
        Ok(serde_json::json!({ "image": ensured.image.to_string(), "built": ensured.built }))
    });
    match result {
        Ok(v) => to_json(&v),
        Err(e) => e,
    }
}

/// The session's spend so far (the Fargate price of its workers' run times): a named list.
#[extendr]
fn sb_session_cost(session: Robj) -> Robj {
    with_session(session, |s| match s.cost() {
        Ok(c) => {
            let m = &c.meter;
            let na = |v: Option<f64>| v.map_or_else(|| r!(NA_REAL), |v| r!(v));
            List::from_names_and_values(
                [
                    "region",
                    "max_cost",
                    "max_hourly_cost",
                    "worker_hourly",
                    "workers",
                    "running",
                    "vcpu_seconds",
                    "gb_seconds",
                    "usd",
                    "usd_on_demand",
                    "hourly_rate",
                    "exceeded",
                ],
                [
                    r!(c.region.clone()),
                    na(c.max_cost),
                    na(c.max_hourly_cost),
                    r!(c.worker_hourly),
                    r!(m.workers as f64),
                    r!(m.running as f64),
                    r!(m.vcpu_seconds),
                    r!(m.gb_seconds),
                    r!(m.usd),
                    r!(m.usd_on_demand),
                    r!(m.hourly_rate),
                    r!(c.exceeded),
                ],
            )
            .expect("names match values")
            .into_robj()
        }
        Err(e) => facade_error(e),
    })
}

extendr_module! {
    mod starburst;
    fn sb_session_new;
    fn sb_submit;
    fn sb_collect;
    fn sb_cancel;
    fn sb_session_info;
    fn sb_session_workers;
    fn sb_worker_log;
    fn sb_session_close;
    fn sb_validate_size;
    fn sb_setup_plan;
    fn sb_setup_apply;
    fn sb_teardown_plan;
    fn sb_teardown;
    fn sb_environment_spec;
    fn sb_environment_image;
    fn sb_session_cost;
}
