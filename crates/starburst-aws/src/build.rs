//! The image builder of a machine without a container engine: AWS CodeBuild in the user's own
//! account builds the image from a build context uploaded to the session bucket and pushes it
//! to ECR with the project's service role.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_codebuild::types::{
    Build, ComputeType, EnvironmentType, EnvironmentVariable, EnvironmentVariableType, SourceType,
    StatusType,
};
use aws_sdk_s3::primitives::ByteStream;
use starburst_cloud::{Arch, BuildRequest, Error, ImageBuilder, RegistryLogin, Result};

use crate::Aws;
use crate::error::map;

/// The build steps CodeBuild runs in the uploaded context: log in to the repository's registry
/// with the project role's token, build for the requested platform, push.
pub const BUILDSPEC: &str = r#"version: 0.2
phases:
  pre_build:
    commands:
      - aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$STARBURST_REGISTRY"
  build:
    commands:
      - docker build --platform "$STARBURST_PLATFORM" --tag "$STARBURST_IMAGE" .
      - docker push "$STARBURST_IMAGE"
"#;

/// CodeBuild's curated images with Docker, per architecture: Amazon Linux 2023 standard 5.0
/// (x86_64) and 3.0 (aarch64).
pub fn build_image(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "aws/codebuild/amazonlinux-x86_64-standard:5.0",
        Arch::Arm64 => "aws/codebuild/amazonlinux-aarch64-standard:3.0",
    }
}

/// CodeBuild's environment type of a build for `arch`.
fn environment_type(arch: Arch) -> EnvironmentType {
    match arch {
        Arch::X86_64 => EnvironmentType::LinuxContainer,
        Arch::Arm64 => EnvironmentType::ArmContainer,
    }
}

/// How many of a failed build's last log lines its error carries.
const TAIL_LINES: usize = 12;

/// A shareable progress callback (one line of the build's log at a time).
pub type BuildProgress = Arc<dyn Fn(&str) + Send + Sync>;

/// Builds worker images with AWS CodeBuild.
///
/// The build context goes to `s3://<bucket>/<prefix>/<tag>-<nonce>/` (deleted after the
/// build), a build of the set-up's project runs [`BUILDSPEC`] on it in privileged mode
/// (Docker needs it) on the architecture's curated image, and the build's CloudWatch Logs
/// stream is relayed to the progress callback while it runs. The registry login of
/// [`ImageBuilder::build_and_push`] is not used: the project's service role pushes.
/// Dropping a build before it ends (an interrupt) stops it.
#[derive(Clone)]
pub struct CodeBuildBuilder {
    codebuild: aws_sdk_codebuild::Client,
    s3: aws_sdk_s3::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    project: String,
    bucket: String,
    prefix: String,
    poll: Duration,
    progress: BuildProgress,
}

impl fmt::Debug for CodeBuildBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeBuildBuilder")
            .field("project", &self.project)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl CodeBuildBuilder {
    /// Builds with the CodeBuild project `project`, uploading contexts under
    /// `s3://<bucket>/<prefix>/`; the build's status is read every 5 seconds.
    pub fn new(
        aws: &Aws,
        project: impl Into<String>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            codebuild: aws_sdk_codebuild::Client::new(aws.sdk()),
            s3: aws_sdk_s3::Client::new(aws.sdk()),
            logs: aws_sdk_cloudwatchlogs::Client::new(aws.sdk()),
            project: project.into(),
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_owned(),
            poll: Duration::from_secs(5),
            progress: Arc::new(|_| {}),
        }
    }

    /// Reads the build's status and log this often.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Sends each line of the build's log (and upload and status lines) to `progress`.
    pub fn with_progress(mut self, progress: BuildProgress) -> Self {
        self.progress = progress;
        self
    }

    /// Uploads every file under `context` to `key_prefix` (relative paths kept); their keys.
    async fn upload(&self, context: &Path, key_prefix: &str) -> Result<Vec<String>> {
        let files = files_under(context)
            .map_err(|e| Error::other("upload build context", context.display().to_string(), e))?;
        let bytes: u64 = files.iter().map(|(_, size)| size).sum();
        (self.progress)(&format!(
            "uploading the build context ({} files, {:.1} MB) to s3://{}/{key_prefix}",
            files.len(),
            bytes as f64 / 1e6,
            self.bucket
        ));
        let mut keys = Vec::with_capacity(files.len());
        for (path, _) in files {
            let relative = path.strip_prefix(context).unwrap_or(&path);
            let key = format!(
                "{key_prefix}{}",
                relative.to_string_lossy().replace('\\', "/")
            );
            let body = ByteStream::from_path(&path)
                .await
                .map_err(|e| Error::other("upload build context", path.display().to_string(), e))?;
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(body)
                .send()
                .await
                .map_err(|e| map("upload build context", format!("{}/{key}", self.bucket), e))?;
            keys.push(key);
        }
        Ok(keys)
    }

    async fn delete(&self, keys: &[String]) {
        for key in keys {
            // Best effort: the bucket's lifecycle rule expires what is left.
            let _ = self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await;
        }
    }

    async fn start(&self, request: &BuildRequest, source: &str) -> Result<String> {
        let image = request.image.to_string();
        let registry = request
            .image
            .repository
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let platform = match request.arch {
            Arch::X86_64 => "linux/amd64",
            Arch::Arm64 => "linux/arm64",
        };
        let variables = [
            ("STARBURST_IMAGE", image.as_str()),
            ("STARBURST_REGISTRY", registry.as_str()),
            ("STARBURST_PLATFORM", platform),
            ("DOCKER_BUILDKIT", "1"),
        ]
        .into_iter()
        .map(|(name, value)| {
            EnvironmentVariable::builder()
                .name(name)
                .value(value)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .expect("name and value are set")
        })
        .collect();
        let out = self
            .codebuild
            .start_build()
            .project_name(&self.project)
            .source_type_override(SourceType::S3)
            .source_location_override(source)
            .buildspec_override(BUILDSPEC)
            .environment_type_override(environment_type(request.arch))
            .image_override(build_image(request.arch))
            .compute_type_override(ComputeType::BuildGeneral1Medium)
            .privileged_mode_override(true)
            .set_environment_variables_override(Some(variables))
            .send()
            .await
            .map_err(|e| {
                let error = map(
                    "start image build",
                    format!("CodeBuild project {}", self.project),
                    e,
                );
                if error.is_not_found() {
                    Error::other(
                        "start image build",
                        format!("CodeBuild project {}", self.project),
                        format!(
                            "the CodeBuild project {} does not exist: run \
                             starburst_setup(cloud_builder = TRUE) to create it, or build with \
                             docker or podman on this machine",
                            self.project
                        ),
                    )
                } else {
                    error
                }
            })?;
        out.build_value()
            .and_then(|b| b.id())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::other(
                    "start image build",
                    format!("CodeBuild project {}", self.project),
                    "CodeBuild answered without a build id",
                )
            })
    }

    async fn describe(&self, id: &str) -> Result<Build> {
        let out = self
            .codebuild
            .batch_get_builds()
            .ids(id)
            .send()
            .await
            .map_err(|e| map("read image build", format!("CodeBuild build {id}"), e))?;
        out.builds()
            .first()
            .cloned()
            .ok_or_else(|| Error::not_found("read image build", format!("CodeBuild build {id}")))
    }

    /// Waits for build `id` to end, relaying its log; its final state and last log lines.
    async fn follow(&self, id: &str) -> Result<(Build, Vec<String>)> {
        let mut log = LogFollower::default();
        loop {
            let build = self.describe(id).await?;
            let stream = build
                .logs()
                .and_then(|l| Some((l.group_name()?.to_owned(), l.stream_name()?.to_owned())));
            if let Some((group, stream)) = &stream {
                log.read(&self.logs, group, stream, &*self.progress).await;
            }
            if build.build_complete() {
                if let Some((group, stream)) = &stream {
                    // The last lines can reach CloudWatch after the build says it ended.
                    tokio::time::sleep(self.poll.min(Duration::from_secs(2))).await;
                    log.read(&self.logs, group, stream, &*self.progress).await;
                }
                return Ok((build, log.tail.into()));
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

#[async_trait]
impl ImageBuilder for CodeBuildBuilder {
    async fn build_and_push(&self, request: &BuildRequest, _login: &RegistryLogin) -> Result<()> {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let key_prefix = format!("{}/{}-{nonce:x}/", self.prefix, request.image.tag)
            .trim_start_matches('/')
            .to_owned();
        let keys = self.upload(&request.context, &key_prefix).await?;
        let outcome = async {
            let id = self
                .start(request, &format!("{}/{key_prefix}", self.bucket))
                .await?;
            (self.progress)(&format!(
                "CodeBuild build {id} started (project {}, {})",
                self.project,
                build_image(request.arch)
            ));
            let guard = StopOnDrop {
                client: self.codebuild.clone(),
                id: Some(id.clone()),
            };
            let (build, tail) = self.follow(&id).await?;
            guard.disarm();
            match build.build_status() {
                Some(StatusType::Succeeded) => {
                    (self.progress)(&format!("CodeBuild build {id} succeeded"));
                    Ok(())
                }
                status => Err(Error::other(
                    "build image",
                    request.image.to_string(),
                    failure_message(&id, status, &build, &tail),
                )),
            }
        }
        .await;
        self.delete(&keys).await;
        outcome
    }
}

/// What a failed build's error says: the status, the failed phase's reason, the log's last
/// lines and where the whole log is.
fn failure_message(
    id: &str,
    status: Option<&StatusType>,
    build: &Build,
    tail: &[String],
) -> String {
    let status = status.map_or("ENDED", |s| s.as_str());
    let mut message = format!("CodeBuild build {id} {status}");
    let failed = build.phases().iter().find(|p| {
        p.phase_status()
            .is_some_and(|s| !matches!(s, StatusType::Succeeded | StatusType::InProgress))
    });
    if let Some(phase) = failed {
        let name = phase.phase_type().map_or("?", |t| t.as_str());
        message.push_str(&format!(" in phase {name}"));
        for context in phase.contexts() {
            if let Some(said) = context.message().filter(|m| !m.is_empty()) {
                message.push_str(&format!(": {said}"));
            }
        }
    }
    if !tail.is_empty() {
        message.push_str("\nlast lines of its log:\n");
        message.push_str(&tail.join("\n"));
    }
    if let Some(logs) = build.logs()
        && let (Some(group), Some(stream)) = (logs.group_name(), logs.stream_name())
    {
        message.push_str(&format!(
            "\nthe whole log: CloudWatch Logs group {group}, stream {stream}"
        ));
    }
    message.push_str("\nfix the cause the log shows and retry");
    message
}

/// Stops a build whose caller stopped waiting for it (the R session was interrupted).
struct StopOnDrop {
    client: aws_sdk_codebuild::Client,
    id: Option<String>,
}

impl StopOnDrop {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.stop_build().id(id).send().await;
            });
        }
    }
}

/// Reads a build's log stream forwards, remembering where it stopped and the last lines.
#[derive(Default)]
struct LogFollower {
    token: Option<String>,
    tail: VecDeque<String>,
}

impl LogFollower {
    /// Relays the lines written since the last read. A stream that does not exist yet (the
    /// build is still provisioning) or a failed read is tried again at the next poll.
    async fn read(
        &mut self,
        client: &aws_sdk_cloudwatchlogs::Client,
        group: &str,
        stream: &str,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) {
        loop {
            let page = client
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.token.clone())
                .send()
                .await;
            let Ok(page) = page else { return };
            for event in page.events() {
                let line = event.message().unwrap_or_default().trim_end();
                progress(line);
                if self.tail.len() == TAIL_LINES {
                    self.tail.pop_front();
                }
                self.tail.push_back(line.to_owned());
            }
            match page.next_forward_token() {
                Some(next) if self.token.as_deref() != Some(next) => {
                    self.token = Some(next.to_owned());
                    if page.events().is_empty() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

/// Every file under `dir`, recursively, with its size, in a stable order.
fn files_under(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push((entry.path(), entry.metadata()?.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buildspec_logs_in_builds_for_the_platform_and_pushes() {
        let phases: Vec<&str> = BUILDSPEC.lines().map(str::trim).collect();
        assert!(phases.contains(&"pre_build:") && phases.contains(&"build:"));
        assert!(BUILDSPEC.contains("--password-stdin \"$STARBURST_REGISTRY\""));
        assert!(BUILDSPEC.contains("--platform \"$STARBURST_PLATFORM\""));
        assert!(BUILDSPEC.contains("docker push \"$STARBURST_IMAGE\""));
    }

    #[test]
    fn context_files_are_listed_recursively_in_a_stable_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM x\n").unwrap();
        std::fs::write(dir.path().join("b/c/pkg.tar.gz"), [0u8; 10]).unwrap();
        let files = files_under(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|(p, n)| (p.strip_prefix(dir.path()).unwrap().to_owned(), *n))
            .collect();
        assert_eq!(
            names,
            [
                (PathBuf::from("Dockerfile"), 7),
                (PathBuf::from("b/c/pkg.tar.gz"), 10)
            ]
        );
    }
}
