//! The image builders of a machine with a container engine, `docker buildx` or `podman`,
//! through the command-runner seam.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use starburst_cloud::{BuildRequest, Error, ImageBuilder, RegistryLogin, Result};

use super::command::{Command, CommandOutput, CommandRunner, ProcessRunner};
use super::spec::platform_arch;
use crate::error::CommandFailed;

/// How many of a failed command's last output lines an error carries.
pub const OUTPUT_TAIL_LINES: usize = 12;

/// A shareable progress callback (one line of build output at a time).
pub type ProgressSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The container engine a [`DockerBuilder`] drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Docker with the buildx plugin.
    Docker,
    /// Podman (Linux machines without Docker; no daemon, no root needed).
    Podman,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// Builds and pushes images with a container engine's CLI.
///
/// Docker: `docker buildx version` (buildx must be installed), `docker login
/// --password-stdin` with the registry's token, then `docker buildx build --platform
/// linux/<arch> --provenance=false --tag <image> --push <context>`.
/// Podman: `podman version`, `podman login --password-stdin`, `podman build --platform
/// linux/<arch> --tag <image> <context>`, `podman push <image>`.
/// Build output goes to the progress callback line by line.
pub struct DockerBuilder {
    runner: Arc<dyn CommandRunner>,
    engine: Engine,
    program: String,
    network: Option<String>,
    progress: ProgressSink,
}

impl fmt::Debug for DockerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerBuilder")
            .field("runner", &self.runner)
            .field("engine", &self.engine)
            .field("program", &self.program)
            .field("network", &self.network)
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
            engine: Engine::Docker,
            program: "docker".into(),
            network: None,
            progress: Arc::new(|_| {}),
        }
    }

    /// Builds with podman (`podman` on `PATH` until [`with_program`](Self::with_program)).
    pub fn podman(runner: Arc<dyn CommandRunner>) -> Self {
        Self {
            engine: Engine::Podman,
            program: "podman".into(),
            ..Self::new(runner)
        }
    }

    /// The engine this builder drives.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Runs the build steps on this network (`--network <network>`, e.g. `host` to reach a
    /// package repository on the build machine's loopback).
    pub fn with_network(mut self, network: impl Into<String>) -> Self {
        self.network = Some(network.into());
        self
    }

    /// Runs this CLI instead of `docker` (or `podman`) on `PATH`.
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
        let cli = |args: Vec<String>| Command::new(self.program.clone(), args);
        let platform = format!("linux/{}", platform_arch(request.arch));
        let network: Vec<String> = self
            .network
            .iter()
            .flat_map(|n| ["--network".to_owned(), n.clone()])
            .collect();
        let log_in = cli(vec![
            "login".into(),
            "--username".into(),
            login.username.clone(),
            "--password-stdin".into(),
            login.server.clone(),
        ])
        .stdin(login.password.as_bytes().to_vec());
        let image = request.image.to_string();
        let context = request.context.display().to_string();
        match self.engine {
            Engine::Docker => vec![
                cli(vec!["buildx".into(), "version".into()]),
                log_in,
                cli([
                    vec![
                        "buildx".into(),
                        "build".into(),
                        "--platform".into(),
                        platform,
                    ],
                    network,
                    vec![
                        "--provenance=false".into(),
                        "--tag".into(),
                        image,
                        "--push".into(),
                        context,
                    ],
                ]
                .concat()),
            ],
            Engine::Podman => vec![
                cli(vec!["version".into()]),
                log_in,
                cli([
                    vec!["build".into(), "--platform".into(), platform],
                    network,
                    vec!["--tag".into(), image.clone(), context],
                ]
                .concat()),
                cli(vec!["push".into(), image]),
            ],
        }
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
                        "{} was not found: install Docker (with the buildx plugin) or podman to \
                         build worker images, or use sync mode (no image build on this machine)",
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
            "podman version" => "podman does not run: check `podman info` and retry",
            "podman login" => {
                "the registry refused the login: check the AWS credentials may call \
                 ecr:GetAuthorizationToken"
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
        let commands = self.commands(request, login);
        let ops: &[(&'static str, &str)] = match self.engine {
            Engine::Docker => &[
                ("docker buildx version", &self.program),
                ("docker login", &login.server),
                ("docker buildx build", &image),
            ],
            Engine::Podman => &[
                ("podman version", &self.program),
                ("podman login", &login.server),
                ("podman build", &image),
                ("podman push", &image),
            ],
        };
        debug_assert_eq!(ops.len(), commands.len(), "{}", self.engine.name());
        for ((op, resource), command) in ops.iter().zip(&commands) {
            self.run(op, resource, command).await?;
        }
        Ok(())
    }
}
