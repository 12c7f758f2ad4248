//! `--ports`: published ports of a managed machine (issue "host integration").
//!
//! berth runs a managed machine (dockerd in its own network namespace); a busybox
//! container publishes a sink (`nc -ll` into /dev/null), another an echo server. Measured:
//! - a TCP transfer of N MiB into the sink through berth's host-side forward, against
//!   the same transfer made from inside the machine's namespace straight to the
//!   container (a socket opened after `setns`), interleaved per round; target ≥ 0.9×;
//! - C concurrent connections through the forward to an echo server (all opened first,
//!   then each sends a line), counted when each got its line back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use berth_test::ManagedBerth;

use crate::stats::median;

/// What the ports scenario is asked to do.
#[derive(Debug)]
pub(crate) struct PortsParams {
    pub(crate) rounds: usize,
    pub(crate) mib: u64,
    pub(crate) connections: usize,
}

const MACHINE: &str = "bb-ports";
const IMAGE: &str = "bb-busybox:1";

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, params: &PortsParams) -> Result<String> {
    // Dropping it stops berth and removes the machine (dockerd, namespace, files).
    let berth = ManagedBerth::start(berth_bin, MACHINE, "")?;
    measure_all(berth.dir(), &berth.socket(), params)
}

fn docker(socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn measure_all(dir: &Path, socket: &Path, params: &PortsParams) -> Result<String> {
    eprintln!("starting the managed machine, importing busybox…");
    let tar = berth_test::busybox_rootfs_tar(dir)?;
    docker(socket, &["import", tar.to_str().unwrap(), IMAGE])?;
    let sink_port = free_port()?;
    docker(
        socket,
        &[
            "run",
            "-d",
            "--name",
            "bb-sink",
            "-p",
            &format!("127.0.0.1:{sink_port}:9000"),
            IMAGE,
            "sh",
            "-c",
            "exec nc -ll -p 9000 -e sh -c 'cat > /dev/null'",
        ],
    )?;
    // The connection test needs a server with a deep accept queue (busybox's httpd and
    // nc listen with a backlog of a few): the host's socat, run in the container with
    // the host's libraries, echoing each connection.
    let echo_port = free_port()?;
    let publish = format!("127.0.0.1:{echo_port}:81");
    let mut args = vec!["run", "-d", "--name", "bb-echo", "-p", &publish];
    args.extend(berth_test::HOST_SOCAT_MOUNTS);
    args.extend([
        IMAGE,
        "/bin/socat",
        "TCP-LISTEN:81,fork,reuseaddr,backlog=4096",
        "PIPE",
    ]);
    docker(socket, &args)?;
    let ip = docker(
        socket,
        &["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "bb-sink"],
    )?;
    let inside: SocketAddr = format!("{ip}:9000").parse()?;
    let netns = format!("/var/run/netns/berth-{MACHINE}");
    let through: SocketAddr = format!("127.0.0.1:{sink_port}").parse()?;
    let bytes = params.mib << 20;

    let mut direct = Vec::new();
    let mut forwarded = Vec::new();
    for round in 0..params.rounds {
        let sides: [&str; 2] = if round % 2 == 0 {
            ["inside", "forward"]
        } else {
            ["forward", "inside"]
        };
        for side in sides {
            let stream = if side == "inside" {
                connect_in_netns(&netns, inside)?
            } else {
                TcpStream::connect(through)?
            };
            let mibs = transfer(stream, bytes)?;
            eprintln!("[{}/{}] {side:7} {mibs:.0} MiB/s", round + 1, params.rounds);
            if side == "inside" {
                direct.push(mibs);
            } else {
                forwarded.push(mibs);
            }
        }
    }
    let ratios: Vec<f64> = forwarded.iter().zip(&direct).map(|(f, d)| f / d).collect();
    let ratio = median(&ratios);
    let lowest = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = ratios.iter().copied().fold(0.0, f64::max);
    let verdict = if ratio >= 0.9 {
        "pass"
    } else {
        "FAIL (< 0.90×)"
    };

    let (served, took) = many_connections(echo_port, params.connections)?;
    let many_verdict = if served == params.connections {
        "pass"
    } else {
        "FAIL"
    };
    Ok(format!(
        "| row | inside the namespace | through berth's forward | ratio | target | verdict |\n|---|---|---|---|---|---|\n| TCP upload of {} MiB, MiB/s | {:.0} | {:.0} | {ratio:.2}× ({lowest:.2}–{highest:.2}) | ≥ 0.90× | {verdict} |\n| {} concurrent connections to a published port | | {served} served in {:.1} s | | all served | {many_verdict} |\n\nTransfer: median over {} rounds of the per-round ratio (lowest–highest round in brackets); the sender shuts down its side and waits for the container's `nc` to close, so every byte arrived.\n",
        params.mib,
        median(&direct),
        median(&forwarded),
        params.connections,
        took.as_secs_f64(),
        params.rounds,
    ))
}

/// A TCP connection opened from inside the network namespace at `netns` (the socket
/// keeps that namespace; the thread that made it is gone).
fn connect_in_netns(netns: &str, addr: SocketAddr) -> Result<TcpStream> {
    let ns = std::fs::File::open(netns).with_context(|| format!("opening {netns}"))?;
    std::thread::spawn(move || -> Result<TcpStream> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .context("entering the machine's network namespace")?;
        Ok(TcpStream::connect(addr)?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the netns thread panicked"))?
}

/// Sends `bytes` zeros, shuts down the write side, waits for the peer to close; MiB/s.
fn transfer(mut stream: TcpStream, bytes: u64) -> Result<f64> {
    let chunk = vec![0u8; 256 << 10];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut buf = [0u8; 64];
    while stream.read(&mut buf)? > 0 {}
    Ok(bytes as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64())
}

/// Opens `n` connections to the echo port, then sends a line on each and counts the
/// connections whose line came back.
fn many_connections(port: u16, n: usize) -> Result<(usize, Duration)> {
    let started = Instant::now();
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        streams.push(s);
    }
    for (i, s) in streams.iter_mut().enumerate() {
        writeln!(s, "connection {i}")?;
    }
    let mut served = 0;
    for (i, mut s) in streams.into_iter().enumerate() {
        let want = format!("connection {i}\n");
        let mut got = vec![0u8; want.len()];
        if s.read_exact(&mut got).is_ok() && got == want.as_bytes() {
            served += 1;
        }
    }
    Ok((served, started.elapsed()))
}
