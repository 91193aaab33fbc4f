//! In-memory implementations of every port. They are real implementations with the ports'
//! full semantics (conditional create, pagination, stop causes), always compiled, used by unit
//! tests and by the scheduler's simulations.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    BuildRequest, Compute, Error, ImageBuilder, ImageRef, LaunchReport, ListPage, LogLine,
    LogQuery, Logs, Network, NetworkConfig, NetworkRequest, ObjectMeta, ObjectPath, ObjectStore,
    Quota, QuotaRequest, Quotas, Registry, RegistryLogin, RequestState, Result, StopCause,
    StopInfo, WorkerId, WorkerPhase, WorkerSpec, WorkerStatus,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An object store in memory.
#[derive(Debug)]
pub struct InMemoryStore {
    objects: Mutex<BTreeMap<ObjectPath, (Bytes, SystemTime)>>,
    page_size: usize,
    requests: AtomicU64,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store listing 1000 objects per page, as S3 does.
    pub fn new() -> Self {
        Self::with_page_size(1000)
    }

    /// An empty store with a custom page size (for pagination tests).
    pub fn with_page_size(page_size: usize) -> Self {
        Self {
            objects: Mutex::default(),
            page_size: page_size.max(1),
            requests: AtomicU64::new(0),
        }
    }

    /// Number of requests served so far (for request-count assertions).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl ObjectStore for InMemoryStore {
    async fn put(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        self.count();
        lock(&self.objects).insert(path.clone(), (data, SystemTime::now()));
        Ok(())
    }

    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        self.count();
        let mut objects = lock(&self.objects);
        if objects.contains_key(path) {
            return Err(Error::already_exists("put_if_absent", path.as_str()));
        }
        objects.insert(path.clone(), (data, SystemTime::now()));
        Ok(())
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes> {
        self.count();
        lock(&self.objects)
            .get(path)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| Error::not_found("get", path.as_str()))
    }

    async fn get_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        let all = self.get(path).await?;
        let len = all.len() as u64;
        let (start, end) = (range.start.min(len), range.end.min(len));
        if start > end {
            return Err(Error::invalid(
                "get_range",
                format!("range {range:?} is reversed"),
            ));
        }
        Ok(all.slice(start as usize..end as usize))
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        self.count();
        lock(&self.objects)
            .get(path)
            .map(|(b, t)| ObjectMeta {
                path: path.clone(),
                size: b.len() as u64,
                modified: *t,
            })
            .ok_or_else(|| Error::not_found("head", path.as_str()))
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        self.count();
        lock(&self.objects).remove(path);
        Ok(())
    }

    async fn list(&self, prefix: &ObjectPath, page_token: Option<String>) -> Result<ListPage> {
        self.count();
        let objects = lock(&self.objects);
        let mut page = ListPage::default();
        let start = match &page_token {
            Some(t) => std::ops::Bound::Excluded(ObjectPath::parse(t.clone())?),
            None => std::ops::Bound::Included(prefix.clone()),
        };
        for (path, (b, t)) in objects.range((start, std::ops::Bound::Unbounded)) {
            if !path.starts_with(prefix) {
                if path.as_str() > prefix.as_str() && !path.as_str().starts_with(prefix.as_str()) {
                    break;
                }
                continue;
            }
            if page.objects.len() == self.page_size {
                page.next = page.objects.last().map(|m: &ObjectMeta| m.path.to_string());
                break;
            }
            page.objects.push(ObjectMeta {
                path: path.clone(),
                size: b.len() as u64,
                modified: *t,
            });
        }
        Ok(page)
    }
}

type LaunchHook = Box<dyn Fn(&WorkerId, &WorkerSpec) + Send + Sync>;

/// Compute in memory: launched workers are records whose phase tests move by hand
/// ([`FakeCompute::set_stopped`]); an optional hook lets a test run a simulated worker for
/// each launch.
#[derive(Default)]
pub struct FakeCompute {
    workers: Mutex<BTreeMap<WorkerId, (WorkerSpec, WorkerStatus)>>,
    next: AtomicU64,
    on_launch: Mutex<Option<LaunchHook>>,
    capacity: Mutex<Option<u32>>,
    /// Where start and stop times come from (the system clock by default).
    clock: Option<Arc<dyn crate::Clock>>,
}

impl std::fmt::Debug for FakeCompute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCompute")
            .field("workers", &lock(&self.workers).len())
            .finish()
    }
}

impl FakeCompute {
    /// No workers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// No workers yet; start and stop times are `clock`'s wall time (a simulation's).
    pub fn with_clock(clock: Arc<dyn crate::Clock>) -> Self {
        Self {
            clock: Some(clock),
            ..Self::default()
        }
    }

    fn wall(&self) -> SystemTime {
        self.clock
            .as_ref()
            .map_or_else(SystemTime::now, |c| c.wall())
    }

    /// Runs `hook` for every worker launched from now on.
    pub fn on_launch(&self, hook: impl Fn(&WorkerId, &WorkerSpec) + Send + Sync + 'static) {
        *lock(&self.on_launch) = Some(Box::new(hook));
    }

    /// Refuses launches beyond `n` live workers, as a platform at its limit would.
    pub fn set_capacity(&self, n: u32) {
        *lock(&self.capacity) = Some(n);
    }

    /// Marks `id` as stopped with `cause` (a Spot interruption, a crash, ...).
    pub fn set_stopped(
        &self,
        id: &WorkerId,
        cause: StopCause,
        exit_code: Option<i32>,
        message: &str,
    ) {
        if let Some((_, st)) = lock(&self.workers).get_mut(id) {
            st.phase = WorkerPhase::Stopped;
            st.stopped_at = Some(self.wall());
            st.stop = Some(StopInfo {
                cause,
                exit_code,
                message: message.to_string(),
            });
        }
    }

    /// Ids of every worker ever launched, in launch order.
    pub fn launched(&self) -> Vec<WorkerId> {
        lock(&self.workers).keys().cloned().collect()
    }

    /// Ids of the workers not stopped.
    pub fn live(&self) -> Vec<WorkerId> {
        lock(&self.workers)
            .iter()
            .filter(|(_, (_, s))| s.phase != WorkerPhase::Stopped)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The spec a worker was launched with.
    pub fn spec_of(&self, id: &WorkerId) -> Option<WorkerSpec> {
        lock(&self.workers).get(id).map(|(s, _)| s.clone())
    }
}

#[async_trait]
impl Compute for FakeCompute {
    async fn launch(&self, spec: &WorkerSpec, count: u32) -> Result<LaunchReport> {
        let mut report = LaunchReport::default();
        for _ in 0..count {
            let live = self.live().len() as u32;
            if lock(&self.capacity).is_some_and(|cap| live >= cap) {
                report.failures.push("capacity exhausted".into());
                continue;
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            let id = WorkerId::new(format!("w{n:05}"))?;
            let status = WorkerStatus {
                id: id.clone(),
                phase: WorkerPhase::Running,
                started_at: Some(self.wall()),
                stopped_at: None,
                stop: None,
            };
            lock(&self.workers).insert(id.clone(), (spec.clone(), status));
            if let Some(hook) = lock(&self.on_launch).as_ref() {
                hook(&id, spec);
            }
            report.launched.push(id);
        }
        Ok(report)
    }

    async fn describe(&self, ids: &[WorkerId]) -> Result<Vec<WorkerStatus>> {
        let workers = lock(&self.workers);
        Ok(ids
            .iter()
            .filter_map(|id| workers.get(id).map(|(_, s)| s.clone()))
            .collect())
    }

    async fn list_live(&self) -> Result<Vec<crate::LiveWorker>> {
        Ok(lock(&self.workers)
            .iter()
            .filter(|(_, (_, s))| s.phase != WorkerPhase::Stopped)
            .map(|(id, (spec, s))| crate::LiveWorker {
                id: id.clone(),
                session: spec.tags.get(crate::SESSION_TAG).cloned(),
                created_at: s.started_at,
                size: Some(spec.size),
                arch: spec.arch,
                capacity: spec.capacity,
            })
            .collect())
    }

    async fn stop(&self, ids: &[WorkerId], reason: &str) -> Result<()> {
        for id in ids {
            let running = lock(&self.workers)
                .get(id)
                .is_some_and(|(_, s)| s.phase != WorkerPhase::Stopped);
            if running {
                self.set_stopped(id, StopCause::StoppedByUser, None, reason);
            }
        }
        Ok(())
    }
}

/// Quotas in memory, with a settable applied value and usage.
#[derive(Debug, Default)]
pub struct FakeQuotas {
    quotas: Mutex<HashMap<String, (Quota, f64)>>,
    requests: Mutex<Vec<QuotaRequest>>,
}

impl FakeQuotas {
    /// No quotas yet; add them with [`FakeQuotas::set`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets quota `code`'s default, applied value and usage.
    pub fn set(&self, code: &str, default: f64, applied: Option<f64>, usage: f64) {
        lock(&self.quotas).insert(
            code.to_string(),
            (
                Quota {
                    code: code.to_string(),
                    applied,
                    default,
                },
                usage,
            ),
        );
    }

    /// Moves a request to `state`.
    pub fn resolve_request(&self, id: &str, state: RequestState) {
        if let Some(r) = lock(&self.requests).iter_mut().find(|r| r.id == id) {
            r.state = state;
        }
    }
}

#[async_trait]
impl Quotas for FakeQuotas {
    async fn quota(&self, code: &str) -> Result<Quota> {
        lock(&self.quotas)
            .get(code)
            .map(|(q, _)| q.clone())
            .ok_or_else(|| Error::not_found("quota", code))
    }
    async fn usage(&self, code: &str) -> Result<f64> {
        lock(&self.quotas)
            .get(code)
            .map(|(_, u)| *u)
            .ok_or_else(|| Error::not_found("usage", code))
    }
    async fn request_increase(&self, code: &str, desired: f64) -> Result<QuotaRequest> {
        self.quota(code).await?;
        let mut requests = lock(&self.requests);
        let r = QuotaRequest {
            id: format!("req-{}", requests.len() + 1),
            code: code.to_string(),
            desired,
            state: RequestState::Pending,
            created: SystemTime::now(),
        };
        requests.push(r.clone());
        Ok(r)
    }
    async fn request_status(&self, id: &str) -> Result<QuotaRequest> {
        lock(&self.requests)
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| Error::not_found("request_status", id))
    }
}

/// Logs in memory, appended by tests or simulated workers.
#[derive(Debug, Default)]
pub struct FakeLogs {
    lines: Mutex<HashMap<WorkerId, Vec<LogLine>>>,
}

impl FakeLogs {
    /// No logs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a line to `worker`'s log.
    pub fn append(&self, worker: &WorkerId, message: &str) {
        lock(&self.lines)
            .entry(worker.clone())
            .or_default()
            .push(LogLine {
                time: Some(SystemTime::now()),
                message: message.to_string(),
            });
    }
}

#[async_trait]
impl Logs for FakeLogs {
    async fn read(&self, worker: &WorkerId, query: &LogQuery) -> Result<Vec<LogLine>> {
        let lines = lock(&self.lines).get(worker).cloned().unwrap_or_default();
        Ok(query.select(lines))
    }
}

/// A registry in memory; [`FakeImageBuilder`] pushes into it.
#[derive(Debug, Default, Clone)]
pub struct FakeRegistry {
    images: Arc<Mutex<Vec<ImageRef>>>,
}

impl FakeRegistry {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds an image as if pushed.
    pub fn insert(&self, image: ImageRef) {
        lock(&self.images).push(image);
    }
}

#[async_trait]
impl Registry for FakeRegistry {
    async fn exists(&self, image: &ImageRef) -> Result<bool> {
        Ok(lock(&self.images).contains(image))
    }
    async fn login(&self) -> Result<RegistryLogin> {
        Ok(RegistryLogin {
            server: "registry.invalid".into(),
            username: "fake".into(),
            password: "fake".into(),
        })
    }
}

/// A builder that records each build and pushes the image into a [`FakeRegistry`].
#[derive(Debug, Default)]
pub struct FakeImageBuilder {
    registry: FakeRegistry,
    builds: Mutex<Vec<BuildRequest>>,
}

impl FakeImageBuilder {
    /// Builds into `registry`.
    pub fn new(registry: FakeRegistry) -> Self {
        Self {
            registry,
            builds: Mutex::default(),
        }
    }
    /// Every build so far.
    pub fn builds(&self) -> Vec<BuildRequest> {
        lock(&self.builds).clone()
    }
}

#[async_trait]
impl ImageBuilder for FakeImageBuilder {
    async fn build_and_push(&self, request: &BuildRequest, _login: &RegistryLogin) -> Result<()> {
        if !request.context.join("Dockerfile").is_file() {
            return Err(Error::invalid(
                "build_and_push",
                format!("no Dockerfile in {}", request.context.display()),
            ));
        }
        lock(&self.builds).push(request.clone());
        self.registry.insert(request.image.clone());
        Ok(())
    }
}

/// A network with one default VPC and its subnets.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    groups: Mutex<BTreeMap<String, String>>,
}

impl FakeNetwork {
    /// A default VPC `vpc-default` with subnets `subnet-a` and `subnet-b`, no groups yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Network for FakeNetwork {
    async fn ensure(&self, request: &NetworkRequest) -> Result<NetworkConfig> {
        let mut groups = lock(&self.groups);
        let n = groups.len() + 1;
        let sg = groups
            .entry(request.security_group_name.clone())
            .or_insert_with(|| format!("sg-{n:04}"))
            .clone();
        let subnets = if request.subnets.is_empty() {
            vec!["subnet-a".into(), "subnet-b".into()]
        } else {
            request.subnets.clone()
        };
        Ok(NetworkConfig {
            vpc: request.vpc.clone().unwrap_or_else(|| "vpc-default".into()),
            subnets,
            security_groups: vec![sg],
        })
    }
}

/// One resource of a [`FakeProvisioner`]'s account: its tags and the settings it was made with.
#[derive(Debug, Clone)]
struct FakeResource {
    id: String,
    tags: crate::Tags,
    settings: String,
}

/// An account in memory for the [`crate::Provisioner`] port: resources with tags and settings,
/// one default VPC, a count of writes, and failures injected by operation name.
#[derive(Debug)]
pub struct FakeProvisioner {
    region: String,
    resources: Mutex<BTreeMap<(crate::ResourceKind, String), FakeResource>>,
    writes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Default for FakeProvisioner {
    fn default() -> Self {
        Self::new("us-east-1")
    }
}

impl FakeProvisioner {
    /// An empty account `000000000000` in `region`.
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_string(),
            resources: Mutex::default(),
            writes: AtomicU64::new(0),
            failures: Mutex::default(),
        }
    }

    /// The next call of `op` (a method name such as `"ensure_cluster"`) fails with a transient
    /// error, as an interrupted run would.
    pub fn fail_next(&self, op: &str) {
        lock(&self.failures).push(op.to_string());
    }

    /// Creates a resource outside starburst (another tool's, or another set-up's).
    pub fn insert(&self, kind: crate::ResourceKind, name: &str, tags: crate::Tags) {
        lock(&self.resources).insert(
            (kind, name.to_string()),
            FakeResource {
                id: format!("{kind}/{name}").replace(' ', "-"),
                tags,
                settings: String::new(),
            },
        );
    }

    /// Every resource in the account.
    pub fn resources(&self) -> Vec<crate::Resource> {
        lock(&self.resources)
            .iter()
            .map(|((kind, name), r)| crate::Resource {
                kind: *kind,
                name: name.clone(),
                id: r.id.clone(),
            })
            .collect()
    }

    /// Calls that created, changed or deleted something.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn check_failure(&self, op: &'static str) -> Result<()> {
        let mut failures = lock(&self.failures);
        match failures.iter().position(|f| f == op) {
            Some(i) => {
                failures.remove(i);
                Err(Error::Transient {
                    op,
                    resource: "fake account".into(),
                    source: "injected failure".into(),
                })
            }
            None => Ok(()),
        }
    }

    fn ensure(
        &self,
        op: &'static str,
        kind: crate::ResourceKind,
        name: &str,
        settings: String,
        tags: &crate::Tags,
    ) -> Result<crate::Ensured> {
        self.check_failure(op)?;
        let mut resources = lock(&self.resources);
        let key = (kind, name.to_string());
        let change = match resources.get_mut(&key) {
            Some(r) if r.tags.get(crate::SETUP_TAG) != tags.get(crate::SETUP_TAG) => {
                return Err(Error::already_exists(
                    op,
                    format!(
                        "{kind} {name}: it exists and was not made by this set-up; \
                         choose another name"
                    ),
                ));
            }
            Some(r) if r.settings == settings && r.tags == *tags => crate::Change::Unchanged,
            Some(r) => {
                r.settings = settings;
                r.tags = tags.clone();
                crate::Change::Updated
            }
            None => {
                let id = match kind {
                    crate::ResourceKind::SecurityGroup => {
                        format!("sg-{:08x}", resources.len() + 1)
                    }
                    crate::ResourceKind::Bucket => name.to_string(),
                    _ => format!("arn:aws:fake:{}:000000000000:{kind}/{name}", self.region)
                        .replace(' ', "-"),
                };
                resources.insert(
                    key.clone(),
                    FakeResource {
                        id,
                        tags: tags.clone(),
                        settings,
                    },
                );
                crate::Change::Created
            }
        };
        if change != crate::Change::Unchanged {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(crate::Ensured {
            resource: crate::Resource {
                kind,
                name: name.to_string(),
                id: resources[&key].id.clone(),
            },
            change,
        })
    }
}

fn settings_of(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("specs serialize")
}

#[async_trait]
impl crate::Provisioner for FakeProvisioner {
    async fn account(&self) -> Result<crate::Account> {
        self.check_failure("account")?;
        Ok(crate::Account {
            id: "000000000000".into(),
            region: self.region.clone(),
            partition: "aws".into(),
        })
    }
    async fn ensure_bucket(
        &self,
        spec: &crate::BucketSpec,
        tags: &crate::Tags,
    ) -> Result<crate::Ensured> {
        let kind = crate::ResourceKind::Bucket;
        self.ensure("ensure_bucket", kind, &spec.name, settings_of(spec), tags)
    }
    async fn ensure_repository(
        &self,
        spec: &crate::RepositorySpec,
        tags: &crate::Tags,
    ) -> Result<crate::Ensured> {
        let kind = crate::ResourceKind::Repository;
        self.ensure(
            "ensure_repository",
            kind,
            &spec.name,
            settings_of(spec),
            tags,
        )
    }
    async fn ensure_cluster(&self, name: &str, tags: &crate::Tags) -> Result<crate::Ensured> {
        let kind = crate::ResourceKind::Cluster;
        self.ensure("ensure_cluster", kind, name, String::new(), tags)
    }
    async fn ensure_log_group(
        &self,
        spec: &crate::LogGroupSpec,
        tags: &crate::Tags,
    ) -> Result<crate::Ensured> {
        let kind = crate::ResourceKind::LogGroup;
        self.ensure(
            "ensure_log_group",
            kind,
            &spec.name,
            settings_of(spec),
            tags,
        )
    }
    async fn ensure_network(
        &self,
        request: &NetworkRequest,
        tags: &crate::Tags,
    ) -> Result<crate::EnsuredNetwork> {
        let kind = crate::ResourceKind::SecurityGroup;
        let name = &request.security_group_name;
        let group = self.ensure("ensure_network", kind, name, String::new(), tags)?;
        let subnets = if request.subnets.is_empty() {
            vec!["subnet-a".into(), "subnet-b".into()]
        } else {
            request.subnets.clone()
        };
        Ok(crate::EnsuredNetwork {
            config: NetworkConfig {
                vpc: request.vpc.clone().unwrap_or_else(|| "vpc-default".into()),
                subnets,
                security_groups: vec![group.resource.id.clone()],
            },
            group,
        })
    }
    async fn ensure_role(
        &self,
        spec: &crate::RoleSpec,
        tags: &crate::Tags,
    ) -> Result<crate::Ensured> {
        let kind = crate::ResourceKind::Role;
        self.ensure("ensure_role", kind, &spec.name, settings_of(spec), tags)
    }
    async fn ensure_build_project(
        &self,
        spec: &crate::BuildProjectSpec,
        tags: &crate::Tags,
    ) -> Result<crate::Ensured> {
        let kind = crate::ResourceKind::BuildProject;
        self.ensure(
            "ensure_build_project",
            kind,
            &spec.name,
            settings_of(spec),
            tags,
        )
    }
    async fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<crate::Resource>> {
        self.check_failure("find_tagged")?;
        Ok(lock(&self.resources)
            .iter()
            .filter(|(_, r)| r.tags.get(key).map(String::as_str) == Some(value))
            .map(|((kind, name), r)| crate::Resource {
                kind: *kind,
                name: name.clone(),
                id: r.id.clone(),
            })
            .collect())
    }
    async fn delete(&self, resource: &crate::Resource) -> Result<()> {
        self.check_failure("delete")?;
        let key = (resource.kind, resource.name.clone());
        if lock(&self.resources).remove(&key).is_some() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A caller's permissions in memory for the [`crate::Permissions`] port: everything allowed
/// except the actions denied, decided as a policy simulation would; or, when the caller's
/// policies cannot be simulated, every permission unknown.
#[derive(Debug)]
pub struct FakePermissions {
    caller: String,
    denied: Mutex<Vec<String>>,
    unsimulated: Option<String>,
}

impl Default for FakePermissions {
    fn default() -> Self {
        Self::new()
    }
}

impl FakePermissions {
    /// The user `arn:aws:iam::000000000000:user/fake`, allowed everything.
    pub fn new() -> Self {
        Self {
            caller: "arn:aws:iam::000000000000:user/fake".to_string(),
            denied: Mutex::default(),
            unsimulated: None,
        }
    }

    /// A caller whose policies cannot be simulated, for the reason `note`: every permission is
    /// reported unknown.
    pub fn unsimulated(note: &str) -> Self {
        Self {
            unsimulated: Some(note.to_string()),
            ..Self::new()
        }
    }

    /// Denies `action` (e.g. `"ecs:CreateCluster"`) on every resource (no statement allows it).
    pub fn deny(&self, action: &str) {
        lock(&self.denied).push(action.to_string());
    }
}

#[async_trait]
impl crate::Permissions for FakePermissions {
    async fn check(&self, needed: &[crate::Permission]) -> Result<crate::PermissionReport> {
        let denied = lock(&self.denied);
        let checks = needed
            .iter()
            .map(|p| crate::PermissionCheck {
                permission: p.clone(),
                verdict: if self.unsimulated.is_some() {
                    crate::Verdict::Unknown
                } else if denied.iter().any(|a| a.eq_ignore_ascii_case(&p.action)) {
                    crate::Verdict::ImplicitDeny
                } else {
                    crate::Verdict::Allowed
                },
                detail: None,
            })
            .collect();
        Ok(crate::PermissionReport {
            caller: self.caller.clone(),
            principal: self.unsimulated.is_none().then(|| self.caller.clone()),
            simulated: self.unsimulated.is_none(),
            note: self.unsimulated.clone(),
            checks,
        })
    }
}
