//! The production image builder: `docker buildx` through the command-runner seam.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use starburst_cloud::{BuildRequest, Error, ImageBuilder, RegistryLogin, Result};

use super::command::{Command, CommandOutput, CommandRunner, ProcessRunner};
use super::spec::platform_arch;
use crate::error::CommandFailed;

/// How many of a failed command's last output lines an error carries.
pub const OUTPUT_TAIL_LINES: usize = 30;

/// A shareable progress callback (one line of build output at a time).
pub type ProgressSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Builds and pushes images with the docker CLI: `docker buildx version` (buildx must be
/// installed), `docker login --password-stdin` with the registry's token, then
/// `docker buildx build --platform linux/<arch> --provenance=false --tag <image> --push
/// <context>`. Build output goes to the progress callback line by line.
pub struct DockerBuilder {
    runner: Arc<dyn CommandRunner>,
    program: String,
    progress: ProgressSink,
}

impl fmt::Debug for DockerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerBuilder")
            .field("runner", &self.runner)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl Default for DockerBuilder {
    fn default() -> Self {
        Self::new(Arc::new(ProcessRunner))
    }
}

impl DockerBuilder {
    /// Runs `docker` through `runner`; progress is discarded until
    /// [`with_progress`](Self::with_progress).
    pub fn new(runner: Arc<dyn CommandRunner>) -> Self {
        Self {
            runner,
            program: "docker".into(),
            progress: Arc::new(|_| {}),
        }
    }

    /// Runs this docker CLI instead of `docker` on `PATH`.
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// Sends each line of docker's output to `progress`.
    pub fn with_progress(mut self, progress: ProgressSink) -> Self {
        self.progress = progress;
        self
    }

    /// The commands of one build, in order (the login's password is the second command's
    /// input, never an argument).
    pub fn commands(&self, request: &BuildRequest, login: &RegistryLogin) -> Vec<Command> {
        let docker = |args: Vec<String>| Command::new(self.program.clone(), args);
        vec![
            docker(vec!["buildx".into(), "version".into()]),
            docker(vec![
                "login".into(),
                "--username".into(),
                login.username.clone(),
                "--password-stdin".into(),
                login.server.clone(),
            ])
            .stdin(login.password.as_bytes().to_vec()),
            docker(vec![
                "buildx".into(),
                "build".into(),
                "--platform".into(),
                format!("linux/{}", platform_arch(request.arch)),
                "--provenance=false".into(),
                "--tag".into(),
                request.image.to_string(),
                "--push".into(),
                request.context.display().to_string(),
            ]),
        ]
    }

    async fn run(&self, op: &'static str, resource: &str, command: &Command) -> Result<()> {
        let progress = self.progress.clone();
        let on_line = move |line: &str| progress(line);
        let output = self
            .runner
            .run(command, &on_line)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::other(
                    op,
                    resource.to_owned(),
                    format!(
                        "{} was not found: install Docker (with the buildx plugin) to build \
                         worker images, or use a prebuilt image",
                        self.program
                    ),
                ),
                _ => Error::other(
                    op,
                    resource.to_owned(),
                    format!("could not start {}: {e}", command.display()),
                ),
            })?;
        if output.success {
            Ok(())
        } else {
            Err(self.failure(op, resource, command, output))
        }
    }

    fn failure(
        &self,
        op: &'static str,
        resource: &str,
        command: &Command,
        output: CommandOutput,
    ) -> Error {
        let hint = match op {
            "docker buildx version" => {
                "docker buildx is not available: install the docker buildx plugin \
                 (https://docs.docker.com/go/buildx/), e.g. the docker-buildx package, and retry"
            }
            "docker login" => {
                "the registry refused the login: check the AWS credentials may call \
                 ecr:GetAuthorizationToken and the Docker daemon is running"
            }
            _ => "the image build or push failed: fix the cause its output shows and retry",
        };
        Error::other(
            op,
            resource.to_owned(),
            CommandFailed {
                command: command.display(),
                code: output.code,
                tail: output.tail(OUTPUT_TAIL_LINES).to_vec(),
                hint: hint.to_owned(),
            },
        )
    }
}

#[async_trait]
impl ImageBuilder for DockerBuilder {
    async fn build_and_push(&self, request: &BuildRequest, login: &RegistryLogin) -> Result<()> {
        let image = request.image.to_string();
        let [version, log_in, build] =
            <[Command; 3]>::try_from(self.commands(request, login)).expect("three commands");
        self.run("docker buildx version", &self.program, &version)
            .await?;
        self.run("docker login", &login.server, &log_in).await?;
        self.run("docker buildx build", &image, &build).await
    }
}
