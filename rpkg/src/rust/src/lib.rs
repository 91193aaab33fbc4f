//! The R binding of starburst: one function per operation, each a thin conversion between R
//! values and the facade's [`starburst::Session`]. Errors never unwind into R: each function
//! returns either its value or an object of class `starburst_rust_error` (class, message) that
//! the R wrapper turns into a classed R condition.

use std::time::Duration;

use extendr_api::prelude::*;

mod identity;
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

/// Stores a blob (a large global, serialized) once for the session; returns its hash (hex).
#[extendr]
fn sb_blob_put(session: Robj, content: Raw) -> Robj {
    with_session(session, |s| match s.put_blob(content.as_slice()) {
        Ok(r) => r!(r.hash.to_hex()),
        Err(e) => facade_error(e),
    })
}

/// Queues a task whose blobs were stored by `sb_blob_put()` (their hashes, in order).
#[extendr]
fn sb_submit(session: Robj, payload: Raw, blobs: Robj, label: Robj) -> Robj {
    let payload = bytes::Bytes::copy_from_slice(payload.as_slice());
    let hashes: Option<Vec<starburst::serialization::BlobHash>> = if blobs.is_null() {
        Some(vec![])
    } else {
        blobs.as_str_iter().and_then(|it| {
            it.map(starburst::serialization::BlobHash::from_hex)
                .collect::<Option<Vec<_>>>()
        })
    };
    let Some(hashes) = hashes else {
        return rust_error(
            "starburst_invalid_argument",
            "blobs must be a character vector of blob hashes from sb_blob_put()",
        );
    };
    // NA (no label) arrives as a string scalar that is NA, not as NULL.
    let label = if label.is_na() {
        None
    } else {
        label.as_str().map(str::to_string)
    };
    with_session(session, |s| {
        match s.submit_stored(payload, &hashes, label) {
            Ok(id) => r!(id.to_string()),
            Err(e) => facade_error(e),
        }
    })
}

/// The identity of a value for sending it once: a key that stays the same while the value
/// cannot have changed, or NULL when it might change without R copying it (it holds an
/// environment other than the global, base, empty, a namespace or a package environment; an
/// external pointer; a data.table, which is modified in place by design) or is too large a
/// tree to check cheaply. See `identity::of`.
#[extendr]
fn sb_identity(x: Robj) -> Robj {
    match identity::of(&x) {
        Some(key) => r!(key),
        None => ().into(),
    }
}

/// A task's state, new events, value or error; waits up to `timeout` seconds.
#[extendr]
fn sb_collect(session: Robj, task: &str, timeout: f64) -> Robj {
    let id = match task_id(task) {
        Ok(id) => id,
        Err(e) => return e,
    };
    // Never a panic, whatever the number: R checks the option, this is the backstop.
    let timeout = starburst::check_seconds("timeout", timeout).unwrap_or(if timeout > 0.0 {
        Duration::from_secs(86_400)
    } else {
        Duration::ZERO
    });
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
                    ["cause", "message", "log_tail"],
                    [
                        r!(f.cause.as_str()),
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
                ["state", "events", "value", "error", "worker", "notices"],
                [
                    r!(c.state.as_str()),
                    List::from_values(events).into_robj(),
                    value,
                    error,
                    worker,
                    r!(s.notices()),
                ],
            )
            .expect("names match values")
            .into_robj()
        }
        Err(e) => facade_error(e),
    })
}

/// Forgets finished tasks once R recorded their outcome (until then `sb_collect` reports it
/// again).
#[extendr]
fn sb_release(session: Robj, tasks: Strings) -> Robj {
    let mut ids = Vec::new();
    for t in tasks.iter() {
        match task_id(t.as_str()) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    with_session(session, |s| {
        s.release(&ids);
        ().into()
    })
}

/// The names of every failure cause the engine reports (R maps each to a condition class).
#[extendr]
fn sb_failure_causes() -> Vec<String> {
    starburst::scheduler::FailureCause::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect()
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
                "provisioning",
                "pulling",
                "starting",
                "ready",
                "blobs_uploaded",
                "blob_bytes_uploaded",
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
                r!(i.starting.provisioning as i32),
                r!(i.starting.pulling as i32),
                r!(i.starting.starting as i32),
                r!(i.starting.ready as i32),
                r!(i.blob_uploads.count as f64),
                r!(i.blob_uploads.bytes as f64),
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

/// Stops the session's workers and returns its final cost (see `cost_list`) and timeline
/// (see `timeline_list`) as `list(cost, timeline)`; idempotent (`NULL` once closed).
#[extendr]
fn sb_session_close(session: Robj) -> Robj {
    let mut handle: ExternalPtr<Handle> = match session.try_into() {
        Ok(h) => h,
        Err(_) => return rust_error("starburst_invalid_argument", "not a starburst session"),
    };
    match handle.0.take() {
        Some(s) => {
            s.close();
            // The final bill and history: every worker has been stopped.
            named(
                &["cost", "timeline"],
                vec![cost_list(&s), timeline_list(&s)],
            )
        }
        None => ().into(),
    }
}

/// Whether this build has the aws backend (the `aws` feature; off with STARBURST_LOCAL_ONLY).
#[extendr]
fn sb_has_aws() -> bool {
    cfg!(feature = "aws")
}

/// The session's history so far: see `timeline_list`.
#[extendr]
fn sb_session_timeline(session: Robj) -> Robj {
    with_session(session, timeline_list)
}

/// A session's timeline as a list: `origin` (the session's start, seconds since the epoch),
/// `now` (seconds from the start), `futures_dropped`, and the columns of `futures` (task,
/// label, worker, submitted, started, finished, outcome, retries), `workers` (worker,
/// launched, placed, running, ready, stopped, cause, cost_usd) and `cost` (time, usd), every
/// time in seconds from the start, `NA` when unknown.
fn timeline_list(s: &Session) -> Robj {
    let t = s.timeline();
    let secs = |d: std::time::Duration| d.as_secs_f64();
    let opt = |d: Option<std::time::Duration>| d.map(secs);
    let origin = t
        .origin
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(f64::NAN, |d| d.as_secs_f64());
    let f = &t.futures;
    let futures = named(
        &[
            "task",
            "label",
            "worker",
            "submitted",
            "started",
            "finished",
            "outcome",
            "retries",
        ],
        vec![
            r!(f.iter().map(|f| f.task.to_string()).collect::<Vec<_>>()),
            r!(f.iter().map(|f| f.label.clone()).collect::<Vec<_>>()),
            r!(f.iter()
                .map(|f| f.worker.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>()),
            r!(f.iter().map(|f| secs(f.submitted)).collect::<Vec<_>>()),
            r!(f.iter().map(|f| opt(f.started)).collect::<Vec<_>>()),
            r!(f.iter().map(|f| opt(f.finished)).collect::<Vec<_>>()),
            r!(f.iter().map(|f| f.outcome.as_str()).collect::<Vec<_>>()),
            r!(f.iter().map(|f| f.retries as i32).collect::<Vec<_>>()),
        ],
    );
    let w = &t.workers;
    let workers = named(
        &[
            "worker", "launched", "placed", "running", "ready", "stopped", "cause", "cost_usd",
        ],
        vec![
            r!(w.iter().map(|w| w.worker.to_string()).collect::<Vec<_>>()),
            r!(w.iter().map(|w| secs(w.launched)).collect::<Vec<_>>()),
            r!(w.iter().map(|w| opt(w.placed)).collect::<Vec<_>>()),
            r!(w.iter().map(|w| opt(w.running)).collect::<Vec<_>>()),
            r!(w.iter().map(|w| opt(w.ready)).collect::<Vec<_>>()),
            r!(w.iter().map(|w| opt(w.stopped)).collect::<Vec<_>>()),
            r!(w.iter().map(|w| w.cause.clone()).collect::<Vec<_>>()),
            r!(w.iter().map(|w| w.cost_usd).collect::<Vec<_>>()),
        ],
    );
    let cost = named(
        &["time", "usd"],
        vec![
            r!(t.cost.iter().map(|(at, _)| secs(*at)).collect::<Vec<_>>()),
            r!(t.cost.iter().map(|(_, usd)| *usd).collect::<Vec<_>>()),
        ],
    );
    named(
        &[
            "origin",
            "now",
            "futures_dropped",
            "futures",
            "workers",
            "cost",
        ],
        vec![
            r!(origin),
            r!(secs(t.now)),
            r!(t.futures_dropped as f64),
            futures,
            workers,
            cost,
        ],
    )
}

/// Every live worker of the AWS set-up in `config_json` (a session configuration): columns
/// `worker`, `session`, `status` (current/live/closed/gone), `age_secs`, `cost_usd` (NA when
/// unpriced); with `stop`, every one of them is stopped.
#[extendr]
fn sb_setup_workers(config_json: &str, stop: bool) -> Robj {
    match Config::from_json(config_json).and_then(|c| starburst::setup_workers(&c, stop)) {
        Ok(ws) => List::from_names_and_values(
            ["worker", "session", "status", "age_secs", "cost_usd"],
            [
                r!(ws.iter().map(|w| w.id.to_string()).collect::<Vec<_>>()),
                r!(ws
                    .iter()
                    .map(|w| w.session.clone().unwrap_or_default())
                    .collect::<Vec<_>>()),
                r!(ws.iter().map(|w| w.status.as_str()).collect::<Vec<_>>()),
                r!(ws.iter().map(|w| w.age.as_secs_f64()).collect::<Vec<_>>()),
                r!(ws
                    .iter()
                    .map(|w| w.usd.map_or(Rfloat::na(), Rfloat::from))
                    .collect::<Vec<_>>()),
            ],
        )
        .expect("names match values")
        .into_robj(),
        Err(e) => facade_error(e),
    }
}

/// What opening the session stopped of sessions that are gone: `workers`, `usd`, `error`.
#[extendr]
fn sb_session_swept(session: Robj) -> Robj {
    with_session(session, |s| {
        let r = s.swept();
        List::from_names_and_values(
            ["workers", "usd", "error"],
            [
                r!(r.workers as i32),
                r!(r.usd),
                r.error
                    .as_deref()
                    .map(|e| r!(e))
                    .unwrap_or_else(|| ().into()),
            ],
        )
        .expect("names match values")
        .into_robj()
    })
}

/// NULL when `value` seconds is valid for the time setting `name`, else a message naming the
/// range (the bounds live in the facade's `SECONDS` table).
#[extendr]
fn sb_check_seconds(name: &str, value: f64) -> Robj {
    match starburst::check_seconds(name, value) {
        Ok(_) => ().into(),
        Err(e) => r!(e.to_string()),
    }
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

/// Whether the caller may do what set-up for `options_json` (set-up options), its sessions,
/// images, quotas and teardown need, as JSON: the caller, whether its policies were simulated
/// (else why not), one entry per permission with its verdict, and `policy`, the IAM policy
/// documents granting every permission not known to be allowed (more than one when they do not
/// fit in one managed policy; `null` when nothing is missing).
#[extendr]
fn sb_check_permissions(options_json: &str, region: Robj, endpoint: Robj) -> Robj {
    let result = from_json("the set-up options", options_json).and_then(|options| {
        let admin = admin(&region, &endpoint)?;
        admin.check_permissions(&options).map_err(facade_error)
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => return e,
    };
    let missing = report.not_allowed();
    let policy = (!missing.is_empty())
        .then(|| starburst::provision::permissions::policy_documents(&missing));
    let checks: Vec<serde_json::Value> = report
        .checks
        .iter()
        .map(|c| {
            let p = &c.permission;
            serde_json::json!({
                "action": p.action,
                "resource": p.resource,
                "condition": p.condition.as_ref().map(|c| format!("{} {} = {}", c.operator, c.key, c.value)),
                "why": p.why,
                "verdict": c.verdict.as_str(),
                "detail": c.detail,
            })
        })
        .collect();
    to_json(&serde_json::json!({
        "caller": report.caller,
        "principal": report.principal,
        "simulated": report.simulated,
        "note": report.note,
        "checks": checks,
        "policy": policy,
    }))
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

/// A runtime spec and its tag, as JSON `{spec, tag}`, from JSON `{r_version, arch, base,
/// distribution: {name, release, codename}, repository, starburst_version, package}` (the
/// binary package's path, hashed now).
#[extendr]
fn sb_runtime_spec(json: &str) -> Robj {
    #[derive(serde::Deserialize)]
    struct Input {
        r_version: String,
        arch: starburst::cloud::Arch,
        base: String,
        distribution: starburst::provision::image::Distribution,
        repository: String,
        starburst_version: String,
        package: String,
    }
    let result = from_json::<Input>("the runtime", json).and_then(|i| {
        let package = starburst::provision::image::BinaryPackage::from_file(&i.package)
            .map_err(|e| facade_error(e.into()))?;
        let spec = starburst::provision::image::RuntimeSpec {
            r_version: i.r_version,
            arch: i.arch,
            base: i.base,
            distribution: i.distribution,
            repository: i.repository,
            starburst_version: i.starburst_version,
            package,
        };
        spec.validate().map_err(|e| facade_error(e.into()))?;
        let tag = spec.tag();
        Ok(serde_json::json!({ "spec": spec, "tag": tag }))
    });
    match result {
        Ok(v) => to_json(&v),
        Err(e) => e,
    }
}

/// The environment spec and its tag, as JSON `{spec, tag}`: from the text of a `renv.lock`
/// when `lock_json` is a string, else from the session's packages (`names`/`versions`)
/// pinned to the first of the repositories (`repo_names`/`repo_urls`); on the runtime,
/// distribution and snapshot of `base_json` (`{runtime, distribution, snapshot}`).
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
    base_json: &str,
) -> Robj {
    use starburst::provision::EnvironmentSpec;
    #[derive(serde::Deserialize)]
    struct Base {
        runtime: String,
        distribution: starburst::provision::image::Distribution,
        snapshot: String,
    }
    let result = (|| {
        let arch: starburst::cloud::Arch = from_json("arch", &format!("{arch:?}"))?;
        let base: Base = from_json("the environment base", base_json)?;
        let base = starburst::provision::image::EnvironmentBase {
            runtime: base.runtime,
            distribution: base.distribution,
            snapshot: base.snapshot,
        };
        let spec = match lock_json.as_str() {
            Some(lock) => EnvironmentSpec::from_renv_lock(lock, arch, &base),
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
                &base,
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

/// Makes sure what the workers of an environment start from exists (`request_json`, a
/// `starburst::EnvironmentRequest`): the runtime, and in image mode the environment's image,
/// built with docker or podman when missing; `progress` gets each line of progress. JSON of a
/// `starburst::EnsuredEnvironment`.
#[extendr]
fn sb_environment_ensure(
    request_json: &str,
    region: Robj,
    endpoint: Robj,
    progress: Function,
) -> Robj {
    let result =
        from_json::<starburst::EnvironmentRequest>("the environment request", request_json)
            .and_then(|request| {
                let admin = admin(&region, &endpoint)?;
                admin
                    .ensure_environment(&request, &mut |line| {
                        if let Err(e) = progress.call(pairlist!(line)) {
                            rprintln!("starburst: progress callback failed: {e}");
                        }
                    })
                    .map_err(facade_error)
            });
    match result {
        Ok(v) => to_json(&v),
        Err(e) => e,
    }
}

/// A session's spend so far (the Fargate price of its workers' run times) as a named list.
fn cost_list(s: &Session) -> Robj {
    match s.cost() {
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
                    r!(f64::from(m.workers)),
                    r!(f64::from(m.running)),
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
    }
}

/// The session's spend so far: see `cost_list`.
#[extendr]
fn sb_session_cost(session: Robj) -> Robj {
    with_session(session, cost_list)
}

fn na_or(v: Option<f64>) -> Robj {
    v.map_or_else(|| r!(NA_REAL), |v| r!(v))
}

fn na_str(v: Option<&str>) -> Robj {
    v.map_or_else(|| r!(NA_STRING), |v| r!(v))
}

fn named(names: &[&str], values: Vec<Robj>) -> Robj {
    List::from_names_and_values(names, values)
        .expect("names match values")
        .into_robj()
}

fn quota_list(q: &starburst::quota::QuotaStatus) -> Robj {
    named(
        &[
            "code", "name", "applied", "default", "usage", "headroom", "warning",
        ],
        vec![
            r!(q.code.clone()),
            r!(q.name.clone()),
            na_or(q.applied),
            r!(q.default),
            r!(q.usage),
            r!(q.headroom),
            na_str(q.fallback_warning.as_deref()),
        ],
    )
}

fn request_list(r: &starburst::cloud::QuotaRequest) -> Robj {
    let created = r
        .created
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(f64::NAN, |d| d.as_secs_f64());
    named(
        &["id", "code", "desired", "state", "created"],
        vec![
            r!(r.id.clone()),
            r!(r.code.clone()),
            r!(r.desired),
            r!(format!("{:?}", r.state)),
            r!(created),
        ],
    )
}

/// The Fargate On-Demand and Spot vCPU quotas, each a named list (see `quota_list`).
#[extendr]
fn sb_quota_status(region: Robj, endpoint: Robj) -> Robj {
    match admin(&region, &endpoint) {
        Ok(a) => {
            let all: Vec<Robj> = a.quota_statuses().iter().map(quota_list).collect();
            List::from_values(all).into_robj()
        }
        Err(e) => e,
    }
}

/// How `workers` workers of `millicpu` fit in the quota of `capacity` (`"on_demand"` or
/// `"spot"`): the quota (see `quota_list`) plus `concurrent`, `quota_bound`, `suggested`.
#[extendr]
fn sb_quota_fit(
    region: Robj,
    endpoint: Robj,
    capacity: &str,
    millicpu: f64,
    memory_mib: f64,
    workers: f64,
) -> Robj {
    let result = from_json::<starburst::cloud::Capacity>("capacity", &format!("{capacity:?}"))
        .and_then(|capacity| {
            let a = admin(&region, &endpoint)?;
            let q = a.quota_status(capacity);
            let size = starburst::cloud::WorkerSize {
                millicpu: millicpu.round() as u32,
                memory_mib: memory_mib.round() as u32,
            };
            let workers = workers.round() as u32;
            let plan = q.plan(workers, size, u64::from(workers));
            Ok(named(
                &["quota", "concurrent", "quota_bound", "suggested"],
                vec![
                    quota_list(&q),
                    r!(f64::from(plan.concurrent)),
                    r!(plan.quota_bound),
                    na_or(q.suggest(workers, size)),
                ],
            ))
        });
    result.unwrap_or_else(|e| e)
}

/// Asks for the quota `code` to be raised to `desired` vCPUs; the request (see
/// `request_list`), recorded in the history file `history`.
#[extendr]
fn sb_quota_request(region: Robj, endpoint: Robj, code: &str, desired: f64, history: &str) -> Robj {
    match admin(&region, &endpoint).and_then(|a| {
        a.request_quota_increase(code, desired, std::path::Path::new(history))
            .map_err(facade_error)
    }) {
        Ok(r) => request_list(&r),
        Err(e) => e,
    }
}

/// Updates the open requests of the history file `history`: list(requests, warnings).
#[extendr]
fn sb_quota_refresh(region: Robj, endpoint: Robj, history: &str) -> Robj {
    match admin(&region, &endpoint).and_then(|a| {
        a.refresh_quota_requests(std::path::Path::new(history))
            .map_err(facade_error)
    }) {
        Ok((known, warnings)) => {
            let requests: Vec<Robj> = known.list().iter().map(request_list).collect();
            named(
                &["requests", "warnings"],
                vec![List::from_values(requests).into_robj(), r!(warnings)],
            )
        }
        Err(e) => e,
    }
}

/// Projects wall time and cost of `tasks` tasks from sampled task times (seconds), on
/// `workers` workers (already fitted to the quota), priced in `region`.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn sb_estimate(
    sample_secs: &[f64],
    tasks: f64,
    workers: f64,
    millicpu: f64,
    memory_mib: f64,
    arch: &str,
    region: &str,
    startup_secs: f64,
) -> Robj {
    use starburst::cost::{Catalog, EstimateRequest, Sample, estimate};
    let result = (|| {
        let arch: starburst::cloud::Arch = from_json("arch", &format!("{arch:?}"))?;
        let times = sample_secs
            .iter()
            .map(|&s| {
                Duration::try_from_secs_f64(s.max(0.0)).map_err(|_| {
                    rust_error(
                        "starburst_invalid_argument",
                        format!("a sampled time of {s} seconds (times speed) is out of range; check 'speed'"),
                    )
                })
            })
            .collect::<std::result::Result<Vec<Duration>, Robj>>()?;
        let startup = starburst::check_seconds("startup", startup_secs)
            .map_err(|e| rust_error("starburst_invalid_argument", e))?;
        let invalid = |e: starburst::cost::Error| rust_error("starburst_invalid_argument", e);
        let sample = Sample::from_durations(&times).map_err(invalid)?;
        let size = starburst::cloud::WorkerSize {
            millicpu: millicpu.round() as u32,
            memory_mib: memory_mib.round() as u32,
        };
        let mut request = EstimateRequest::new(sample, tasks as u64, workers as u32, size, region);
        request.arch = arch;
        request.startup = startup;
        let e = estimate(&Catalog::builtin(), &request).map_err(invalid)?;
        Ok(named(
            &[
                "tasks",
                "workers",
                "waves",
                "per_task_secs",
                "wall_secs",
                "wall_secs_high",
                "worker_seconds",
                "vcpu_seconds",
                "gb_seconds",
                "cost_on_demand",
                "cost_spot",
            ],
            vec![
                r!(e.tasks as f64),
                r!(f64::from(e.workers_used)),
                r!(e.waves as f64),
                r!(e.per_task_secs),
                r!(e.wall_secs),
                r!(e.wall_secs_high),
                r!(e.worker_seconds),
                r!(e.vcpu_seconds),
                r!(e.gb_seconds),
                r!(e.cost_on_demand),
                r!(e.cost_spot),
            ],
        ))
    })();
    result.unwrap_or_else(|e| e)
}

extendr_module! {
    mod starburst;
    fn sb_session_new;
    fn sb_blob_put;
    fn sb_submit;
    fn sb_identity;
    fn sb_collect;
    fn sb_cancel;
    fn sb_release;
    fn sb_failure_causes;
    fn sb_session_info;
    fn sb_session_workers;
    fn sb_worker_log;
    fn sb_session_close;
    fn sb_session_timeline;
    fn sb_has_aws;
    fn sb_validate_size;
    fn sb_check_seconds;
    fn sb_setup_workers;
    fn sb_session_swept;
    fn sb_setup_plan;
    fn sb_check_permissions;
    fn sb_setup_apply;
    fn sb_teardown_plan;
    fn sb_teardown;
    fn sb_runtime_spec;
    fn sb_environment_spec;
    fn sb_environment_ensure;
    fn sb_session_cost;
    fn sb_quota_status;
    fn sb_quota_fit;
    fn sb_quota_request;
    fn sb_quota_refresh;
    fn sb_estimate;
}
