//! `berth docker enable | disable`: a docker context named `berth` in the docker CLI's
//! own context store, made current, so that plain `docker ps` goes through berth. The
//! docker CLI itself edits its store (`docker context …`), so berth never depends on
//! the store's file format. `disable` restores the context that was current before.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::client;
use crate::cli::{CommonArgs, DockerCommand};

const CONTEXT: &str = "berth";

pub(crate) fn run(common: &CommonArgs, command: &DockerCommand) -> Result<()> {
    match command {
        DockerCommand::Enable => enable(common),
        DockerCommand::Disable => disable(),
    }
}

fn enable(common: &CommonArgs) -> Result<()> {
    let socket = client::api_socket(common)?;
    let host = format!("host=unix://{}", socket.display());
    let current = docker(&["context", "show"])?;
    if current != CONTEXT {
        let file = previous_file();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&file, &current).with_context(|| format!("writing {}", file.display()))?;
    }
    if docker(&["context", "inspect", CONTEXT]).is_ok() {
        docker(&["context", "update", CONTEXT, "--docker", &host])?;
    } else {
        docker(&[
            "context",
            "create",
            CONTEXT,
            "--description",
            "berth Docker API gateway",
            "--docker",
            &host,
        ])?;
    }
    docker(&["context", "use", CONTEXT])?;
    println!(
        "docker now uses berth (context {CONTEXT:?} → unix://{})",
        socket.display()
    );
    if std::env::var_os("DOCKER_HOST").is_some() {
        println!("note: DOCKER_HOST is set in this shell and takes precedence over the context");
    }
    Ok(())
}

fn disable() -> Result<()> {
    let previous = std::fs::read_to_string(previous_file())
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s != CONTEXT)
        .unwrap_or_else(|| "default".to_owned());
    docker(&["context", "use", &previous])?;
    let _ = docker(&["context", "rm", "--force", CONTEXT]);
    let _ = std::fs::remove_file(previous_file());
    println!("docker uses context {previous:?} again");
    Ok(())
}

/// Where `enable` remembers the context to go back to: beside the docker CLI's own
/// configuration (`$DOCKER_CONFIG`, or `~/.docker`), whose current context it changed.
fn previous_file() -> PathBuf {
    let dir = std::env::var_os("DOCKER_CONFIG").map_or_else(
        || {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/root"), PathBuf::from)
                .join(".docker")
        },
        PathBuf::from,
    );
    dir.join("berth-previous-context")
}

/// Runs the docker CLI; returns its trimmed stdout.
fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running the docker CLI (is it installed? Debian: docker.io or docker-cli)")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
