//! `--vm`: a `kind = "vm"` machine (issue 20) against a namespace (`managed`) machine,
//! both behind their own berth, interleaved per round:
//!
//! - cold start: the first `GET /version` through berth with the VM stopped (target
//!   here, TCG: ≤ 15 s; with KVM: ≤ 2 s), the accelerator named;
//! - keep-alive `GET /containers/json`, p50 over one connection;
//! - an exec hijack: MiB through a container's `cat` (`docker exec -i`);
//! - `docker cp` of a file into a container, MiB/s;
//! - reading a file from a shared directory (the VM: virtio-9p `shares`; the namespace
//!   machine: a plain bind mount) inside a container, MiB/s.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use berth_test::{wire, ManagedBerth};

use crate::stats::{median, percentile};

const VM: &str = "bb-vm";
const NS: &str = "bb-vm-ns";
const IMAGE: &str = "bb-vm-busybox:1";

/// Sizes and rounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VmParams {
    pub(crate) rounds: usize,
    /// Requests per keep-alive sample.
    pub(crate) requests: usize,
    /// Bytes through the exec hijack, MiB.
    pub(crate) hijack_mib: u64,
    /// `docker cp` and shared-file size, MiB.
    pub(crate) file_mib: u64,
}

/// Runs the scenario and returns its Markdown report.
pub(crate) fn run(berth_bin: &Path, params: &VmParams) -> Result<String> {
    let share = tempfile::tempdir()?;
    let share_dir = share.path().to_str().context("temp dir")?.to_owned();
    let vm = ManagedBerth::start_kind(
        berth_bin,
        VM,
        "vm",
        &format!("cpus = 2\nmemory = \"2GiB\"\ndisk_size = \"8GiB\"\nshares = [\"{share_dir}\"]\n"),
    )?;
    let ns = ManagedBerth::start(berth_bin, NS, "")?;
    let big = share.path().join("big.bin");
    write_file(&big, params.file_mib)?;

    // Warm: image built, both machines up, the test image imported, a cat container.
    let started = Instant::now();
    docker(&vm, &["version"])?;
    eprintln!(
        "VM first start (image build included): {:?}",
        started.elapsed()
    );
    let tar = berth_test::busybox_rootfs_tar(vm.dir())?;
    for b in [&vm, &ns] {
        docker(b, &["import", tar.to_str().context("path")?, IMAGE])?;
        docker(
            b,
            &["run", "-d", "--name", "bb-cat", IMAGE, "sleep", "100000"],
        )?;
    }
    let status: serde_json::Value =
        serde_json::from_slice(&vm.berth(&["status", "--json"]).stdout)?;
    let accelerator = status["machines"][0]["accelerator"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let note = status["machines"][0]["accelerator_note"]
        .as_str()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();

    let mut cold = Vec::new();
    let (mut ka_vm, mut ka_ns) = (Vec::new(), Vec::new());
    let (mut hj_vm, mut hj_ns) = (Vec::new(), Vec::new());
    let (mut cp_vm, mut cp_ns) = (Vec::new(), Vec::new());
    let (mut rd_vm, mut rd_ns) = (Vec::new(), Vec::new());
    for round in 0..params.rounds {
        let out = vm.berth(&["machine", "stop", VM]);
        if !out.status.success() {
            bail!("machine stop: {}", String::from_utf8_lossy(&out.stderr));
        }
        let t = Instant::now();
        cold_version(&vm.socket())?;
        cold.push(t.elapsed().as_secs_f64());
        // The container stopped with the VM.
        docker(&vm, &["start", "bb-cat"])?;
        let pairs: [(&ManagedBerth, bool); 2] = if round % 2 == 0 {
            [(&vm, true), (&ns, false)]
        } else {
            [(&ns, false), (&vm, true)]
        };
        for (b, is_vm) in pairs {
            let ka = keep_alive_p50(&b.socket(), params.requests)?;
            let hj = exec_hijack(b, params.hijack_mib)?;
            let cp = docker_cp(b, &big, params.file_mib)?;
            let rd = read_shared(b, &share_dir, params.file_mib)?;
            let (k, h, c, d) = if is_vm {
                (&mut ka_vm, &mut hj_vm, &mut cp_vm, &mut rd_vm)
            } else {
                (&mut ka_ns, &mut hj_ns, &mut cp_ns, &mut rd_ns)
            };
            k.push(ka);
            h.push(hj);
            c.push(cp);
            d.push(rd);
        }
        eprintln!(
            "[{}/{}] cold {:.2}s; json-ka p50 vm {:.3} ms ns {:.3} ms; hijack vm {:.0} ns {:.0} MiB/s; cp vm {:.0} ns {:.0} MiB/s; shared read vm {:.0} ns {:.0} MiB/s",
            round + 1,
            params.rounds,
            cold[round],
            ka_vm[round],
            ka_ns[round],
            hj_vm[round],
            hj_ns[round],
            cp_vm[round],
            cp_ns[round],
            rd_vm[round],
            rd_ns[round],
        );
    }
    let cold_s = median(&cold);
    let verdict = match accelerator.as_str() {
        "tcg" if cold_s <= 15.0 => "pass (≤ 15 s, TCG)",
        "tcg" => "FAIL (> 15 s, TCG)",
        "kvm" if cold_s <= 2.0 => "pass (≤ 2 s, KVM)",
        _ => "FAIL (> 2 s, KVM)",
    };
    let row = |name: &str, vm: &[f64], ns: &[f64], unit: &str| {
        let (v, n) = (median(vm), median(ns));
        format!("| {name}, {unit} | {v:.3} | {n:.3} | {:.2}× |\n", v / n)
    };
    Ok(format!(
        "Accelerator: **{accelerator}**{note}. Median over {} rounds.\n\n\
         | row | VM machine | target | verdict |\n|---|---|---|---|\n\
         | cold start: first `GET /version`, VM stopped, s | {cold_s:.2} | TCG ≤ 15 s, KVM ≤ 2 s | {verdict} |\n\n\
         | row | VM machine | namespace machine | VM / namespace |\n|---|---|---|---|\n{}{}{}{}",
        params.rounds,
        row(&format!("keep-alive `GET /containers/json` p50 ({} requests)", params.requests), &ka_vm, &ka_ns, "ms"),
        row(&format!("exec hijack, {} MiB through `cat`", params.hijack_mib), &hj_vm, &hj_ns, "MiB/s"),
        row(&format!("`docker cp` of {} MiB into a container", params.file_mib), &cp_vm, &cp_ns, "MiB/s"),
        row(&format!("reading {} MiB from a shared directory in a container", params.file_mib), &rd_vm, &rd_ns, "MiB/s"),
    ))
}

/// `GET /version` with a patient read (`wire::request` gives up after 60 s, and a cold
/// TCG boot on a loaded host can take longer).
fn cold_version(socket: &Path) -> Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(b"GET /v1.41/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let (head, _) = wire::read_head(&mut s, Duration::from_secs(600))?;
    if !head.starts_with(b"HTTP/1.1 200 ") {
        bail!("cold GET /version: {}", String::from_utf8_lossy(&head));
    }
    Ok(())
}

fn docker(b: &ManagedBerth, args: &[&str]) -> Result<String> {
    let out = b.docker(args);
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn write_file(path: &Path, mib: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..mib {
        f.write_all(&chunk)?;
    }
    f.flush()?;
    Ok(())
}

/// p50 in ms of `GET /containers/json` over one keep-alive connection.
fn keep_alive_p50(socket: &Path, requests: usize) -> Result<f64> {
    use std::io::Read;
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let req = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut times = Vec::with_capacity(requests);
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..requests {
        let t = Instant::now();
        s.write_all(req)?;
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                bail!("connection closed");
            }
            got.extend_from_slice(&buf[..n]);
            if response_complete(&got) {
                break;
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentile(&mut times, 50.0))
}

/// A whole response: head plus `Content-Length` bytes, or a chunked body's last chunk.
fn response_complete(got: &[u8]) -> bool {
    let Some(end) = wire::find(got, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return got.len() >= end + 4 + len;
    }
    got.ends_with(b"0\r\n\r\n")
}

/// MiB/s through `docker exec -i bb-cat cat` (output discarded in the container).
fn exec_hijack(b: &ManagedBerth, mib: u64) -> Result<f64> {
    let mut child = b
        .docker_command(&["exec", "-i", "bb-cat", "sh", "-c", "cat > /dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let chunk = vec![b'x'; 1024 * 1024];
    let t = Instant::now();
    for _ in 0..mib {
        stdin.write_all(&chunk)?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("exec -i: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(mib as f64 / t.elapsed().as_secs_f64())
}

/// MiB/s of `docker cp <file> bb-cat:/tmp/cp.bin`.
fn docker_cp(b: &ManagedBerth, file: &Path, mib: u64) -> Result<f64> {
    let t = Instant::now();
    docker(
        b,
        &["cp", file.to_str().context("path")?, "bb-cat:/tmp/cp.bin"],
    )?;
    let took = t.elapsed().as_secs_f64();
    docker(b, &["exec", "bb-cat", "rm", "/tmp/cp.bin"])?;
    Ok(mib as f64 / took)
}

/// MiB/s of `dd` reading `<share>/big.bin` in a container that bind-mounts the share,
/// timed inside the container (its start excluded).
fn read_shared(b: &ManagedBerth, share: &str, mib: u64) -> Result<f64> {
    // The host's page cache holds the file either way; drop it so both sides read
    // the same way (the VM reads through QEMU's 9p server).
    let _ = Command::new("sh")
        .args(["-c", "echo 1 > /proc/sys/vm/drop_caches"])
        .status();
    let out = b.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{share}:/share:ro"),
        IMAGE,
        "sh",
        "-c",
        "cut -d' ' -f1 /proc/uptime; dd if=/share/big.bin of=/dev/null bs=1M 2>/dev/null; cut -d' ' -f1 /proc/uptime",
    ]);
    if !out.status.success() {
        bail!("shared read: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The kernel's uptime before and after (10 ms resolution; Debian's busybox dd
    // prints no timing and its date has no %N).
    let text = String::from_utf8_lossy(&out.stdout);
    let marks: Vec<f64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [before, after] = marks[..] else {
        bail!("shared read timing: {text:?}");
    };
    let seconds = (after - before).max(0.01);
    Ok(mib as f64 / seconds)
}
