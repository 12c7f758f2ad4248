//! `--cold-start`: the first answer of a stopped managed machine (issue "managed
//! engines"): `GET /version` through berth while its machine is stopped (berth starts
//! dockerd in the machine's namespace, waits until it answers, forwards), against
//! starting the same dockerd by hand the same way (`nsenter --net=… dockerd` with its
//! own data and exec roots) and asking it as soon as its socket answers `/_ping`.
//! Both keep their data between rounds, as a machine does. Target ≤ 1.15×.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use berth_test::wire;
use berth_test::ManagedBerth;

use crate::stats::median;

const MACHINE: &str = "bb-cold";

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, rounds: usize) -> Result<String> {
    // Dropping it stops berth and removes the machine (dockerd, namespace, files).
    let berth = ManagedBerth::start(berth_bin, MACHINE, "")?;
    let direct_ns = format!("bb-cold-direct-{}", std::process::id());
    let result = measure(&berth, &direct_ns, rounds);
    let _ = Command::new("ip")
        .args(["netns", "delete", &direct_ns])
        .status();
    result
}

fn measure(berth: &ManagedBerth, direct_ns: &str, rounds: usize) -> Result<String> {
    let socket = &berth.socket();
    ip(&["netns", "add", direct_ns])?;
    ip(&["netns", "exec", direct_ns, "ip", "link", "set", "lo", "up"])?;
    let direct_dir = berth.dir().join("direct");
    std::fs::create_dir_all(direct_dir.join("data"))?;
    std::fs::write(direct_dir.join("daemon.json"), "{}")?;
    // One start of each first: data roots initialised, page cache warm, like a
    // machine used before.
    let mut child = start_dockerd(&direct_dir, direct_ns)?;
    wait_version(&direct_dir.join("docker.sock"), Duration::from_secs(60))?;
    stop_dockerd(&mut child);
    wait_version(socket, Duration::from_secs(60))?;
    stop_machine(berth)?;

    let mut direct = Vec::new();
    let mut through = Vec::new();
    for round in 0..rounds {
        let sides = if round % 2 == 0 {
            ["direct", "berth"]
        } else {
            ["berth", "direct"]
        };
        for side in sides {
            let took = if side == "direct" {
                let started = Instant::now();
                let mut child = start_dockerd(&direct_dir, direct_ns)?;
                wait_version(&direct_dir.join("docker.sock"), Duration::from_secs(60))?;
                let took = started.elapsed();
                stop_dockerd(&mut child);
                took
            } else {
                let started = Instant::now();
                let resp = wire::request(socket, "GET", "/v1.41/version", &[], b"")?;
                let took = started.elapsed();
                if resp.status != 200 {
                    bail!("GET /version through berth: {resp}");
                }
                stop_machine(berth)?;
                took
            };
            eprintln!(
                "[{}/{rounds}] {side:6} first /version after {took:.2?}",
                round + 1
            );
            if side == "direct" {
                direct.push(took.as_secs_f64());
            } else {
                through.push(took.as_secs_f64());
            }
        }
    }
    let ratios: Vec<f64> = through.iter().zip(&direct).map(|(b, d)| b / d).collect();
    let ratio = median(&ratios);
    let verdict = if ratio <= 1.15 {
        "pass"
    } else {
        "FAIL (> 1.15×)"
    };
    Ok(format!(
        "| row | dockerd started by hand | berth, stopped machine | ratio | target | verdict |\n|---|---|---|---|---|---|\n| first `GET /version`, s | {:.3} | {:.3} | {ratio:.2}× | ≤ 1.15× | {verdict} |\n\nMedian over {rounds} rounds of the per-round ratio. By hand: `nsenter --net=<netns> dockerd` with the machine's flags, then `/_ping` every 5 ms until it answers, then `/version`. berth: the request itself starts the machine.\n",
        median(&direct),
        median(&through),
    ))
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip").args(args).status()?;
    if !status.success() {
        bail!("ip {}: {status}", args.join(" "));
    }
    Ok(())
}

/// dockerd with the command line berth's launcher uses, in `ns`, with its roots under
/// `dir`.
fn start_dockerd(dir: &Path, ns: &str) -> Result<Child> {
    let _ = std::fs::remove_file(dir.join("docker.sock"));
    let log = std::fs::File::create(dir.join("dockerd.log"))?;
    let netns = Path::new("/var/run/netns").join(ns);
    let argv = berth_engine::dockerd_command_line(dir, &netns)?;
    let (program, args) = argv
        .split_first()
        .context("an empty dockerd command line")?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting dockerd")
}

fn stop_dockerd(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Polls `/_ping` every 5 ms, then asks `/version`.
fn wait_version(socket: &Path, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = wire::request(socket, "GET", "/_ping", &[], b"") {
            if r.status == 200 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("{} did not answer within {within:?}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = wire::request(socket, "GET", "/v1.41/version", &[], b"")?;
    if r.status != 200 {
        bail!("GET /version: {r}");
    }
    Ok(())
}

fn stop_machine(berth: &ManagedBerth) -> Result<()> {
    let out = berth.berth(&["machine", "stop", MACHINE]);
    if !out.status.success() {
        bail!(
            "berth machine stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
