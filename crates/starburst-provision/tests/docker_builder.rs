//! DockerBuilder's command sequence, recorded through the command-runner seam (no docker runs).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use starburst_cloud::{Arch, BuildRequest, Error, ImageBuilder, ImageRef, RegistryLogin};
use starburst_provision::CommandFailed;
use starburst_provision::image::{
    CommandOutput, DockerBuilder, OUTPUT_TAIL_LINES, RecordingRunner,
};

fn request(arch: Arch) -> BuildRequest {
    BuildRequest {
        context: PathBuf::from("/tmp/starburst/context-1"),
        image: ImageRef {
            repository: "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst".into(),
            tag: "r4.4.1-amd64-0123456789abcdef".into(),
        },
        arch,
    }
}

fn login() -> RegistryLogin {
    RegistryLogin {
        server: "https://123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
        username: "AWS".into(),
        password: "ecr-token-secret".into(),
    }
}

fn words(c: &starburst_provision::image::Command) -> Vec<String> {
    std::iter::once(c.program.clone())
        .chain(c.args.iter().cloned())
        .collect()
}

#[tokio::test]
async fn checks_buildx_logs_in_through_stdin_then_builds_and_pushes() {
    let runner = RecordingRunner::new();
    runner.respond(
        ["docker", "buildx", "build"],
        CommandOutput::ok(["#1 building", "#2 pushing"]),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let builder =
        DockerBuilder::new(Arc::new(runner.clone())).with_progress(Arc::new(move |l: &str| {
            sink.lock().unwrap().push(l.to_owned())
        }));
    builder
        .build_and_push(&request(Arch::X86_64), &login())
        .await
        .unwrap();

    let calls = runner.calls();
    let lines: Vec<Vec<String>> = calls.iter().map(words).collect();
    assert_eq!(
        lines,
        [
            vec!["docker", "buildx", "version"],
            vec![
                "docker",
                "login",
                "--username",
                "AWS",
                "--password-stdin",
                "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
            ],
            vec![
                "docker",
                "buildx",
                "build",
                "--platform",
                "linux/amd64",
                "--provenance=false",
                "--tag",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst:r4.4.1-amd64-0123456789abcdef",
                "--push",
                "/tmp/starburst/context-1",
            ],
        ]
        .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    );
    assert_eq!(calls[1].stdin.as_deref(), Some(&b"ecr-token-secret"[..]));
    assert!(calls[0].stdin.is_none() && calls[2].stdin.is_none());
    for call in &calls {
        assert!(
            !call.args.iter().any(|a| a.contains("ecr-token-secret")),
            "the password is never an argument: {call:?}"
        );
        assert!(!format!("{call:?}").contains("ecr-token-secret"));
    }
    assert_eq!(*seen.lock().unwrap(), ["#1 building", "#2 pushing"]);
}

#[tokio::test]
async fn arm64_builds_for_linux_arm64() {
    let runner = RecordingRunner::new();
    DockerBuilder::new(Arc::new(runner.clone()))
        .build_and_push(&request(Arch::Arm64), &login())
        .await
        .unwrap();
    let build = &runner.calls()[2];
    let at = build.args.iter().position(|a| a == "--platform").unwrap();
    assert_eq!(build.args[at + 1], "linux/arm64");
}

#[tokio::test]
async fn missing_buildx_stops_before_login_with_an_install_hint() {
    let runner = RecordingRunner::new();
    runner.respond(
        ["docker", "buildx", "version"],
        CommandOutput::failed(1, ["docker: unknown command: docker buildx"]),
    );
    let err = DockerBuilder::new(Arc::new(runner.clone()))
        .build_and_push(&request(Arch::X86_64), &login())
        .await
        .unwrap_err();
    let message = format!("{err}");
    assert!(
        message.contains("install the docker buildx plugin"),
        "{message}"
    );
    assert!(message.contains("docker: unknown command"), "{message}");
    assert_eq!(runner.calls().len(), 1, "nothing after the buildx check");
}

#[tokio::test]
async fn missing_docker_says_to_install_docker() {
    let runner = RecordingRunner::new();
    runner.not_found(["docker"]);
    let err = DockerBuilder::new(Arc::new(runner.clone()))
        .build_and_push(&request(Arch::X86_64), &login())
        .await
        .unwrap_err();
    assert!(
        format!("{err}").contains("docker was not found: install Docker"),
        "{err}"
    );
}

#[tokio::test]
async fn refused_login_stops_before_the_build() {
    let runner = RecordingRunner::new();
    runner.respond(
        ["docker", "login"],
        CommandOutput::failed(1, ["Error response from daemon: login attempt failed"]),
    );
    let err = DockerBuilder::new(Arc::new(runner.clone()))
        .build_and_push(&request(Arch::X86_64), &login())
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("login attempt failed"), "{err}");
    assert!(!format!("{err}").contains("ecr-token-secret"));
    assert_eq!(runner.calls().len(), 2);
}

#[tokio::test]
async fn failed_build_carries_the_output_tail() {
    let runner = RecordingRunner::new();
    let output: Vec<String> = (1..=100).map(|i| format!("step {i}")).collect();
    runner.respond(
        ["docker", "buildx", "build"],
        CommandOutput::failed(17, output),
    );
    let err = DockerBuilder::new(Arc::new(runner))
        .build_and_push(&request(Arch::X86_64), &login())
        .await
        .unwrap_err();
    let Error::Other {
        op,
        resource,
        source,
    } = &err
    else {
        panic!("expected Error::Other, got {err:?}");
    };
    assert_eq!(*op, "docker buildx build");
    assert!(resource.ends_with("/starburst:r4.4.1-amd64-0123456789abcdef"));
    let failed = source
        .downcast_ref::<CommandFailed>()
        .expect("a CommandFailed source");
    assert_eq!(failed.code, Some(17));
    assert_eq!(failed.tail.len(), OUTPUT_TAIL_LINES);
    assert_eq!(failed.tail.last().unwrap(), "step 100");
    assert_eq!(
        failed.tail[0],
        format!("step {}", 100 - OUTPUT_TAIL_LINES + 1)
    );
    let message = format!("{err}");
    assert!(message.contains("exited with status 17"), "{message}");
    assert!(
        message.contains("step 100") && !message.contains("step 1\n"),
        "{message}"
    );
}

#[tokio::test]
async fn podman_checks_itself_logs_in_through_stdin_builds_on_the_network_then_pushes() {
    let runner = RecordingRunner::new();
    runner.respond(["podman", "build"], CommandOutput::ok(["STEP 1/5: FROM"]));
    let builder = DockerBuilder::podman(Arc::new(runner.clone())).with_network("host");
    builder
        .build_and_push(&request(Arch::Arm64), &login())
        .await
        .unwrap();
    let image =
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst:r4.4.1-amd64-0123456789abcdef";
    let lines: Vec<Vec<String>> = runner.calls().iter().map(words).collect();
    assert_eq!(
        lines,
        [
            vec!["podman", "version"],
            vec![
                "podman",
                "login",
                "--username",
                "AWS",
                "--password-stdin",
                "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
            ],
            vec![
                "podman",
                "build",
                "--platform",
                "linux/arm64",
                "--network",
                "host",
                "--tag",
                image,
                "/tmp/starburst/context-1",
            ],
            vec!["podman", "push", image],
        ]
        .map(|v| v.into_iter().map(String::from).collect::<Vec<_>>())
    );
    assert_eq!(
        runner.calls()[1].stdin.as_deref(),
        Some(&b"ecr-token-secret"[..])
    );
}

#[tokio::test]
async fn a_failed_podman_push_names_the_image() {
    let runner = RecordingRunner::new();
    runner.respond(
        ["podman", "push"],
        CommandOutput::failed(125, ["Error: denied: not authorized"]),
    );
    let err = DockerBuilder::podman(Arc::new(runner))
        .build_and_push(&request(Arch::X86_64), &login())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("podman push"), "{text}");
    assert!(text.contains("not authorized"), "{text}");
}
