//! `EngineSupervisor` against real dockerd (root, dockerd, containerd, runc, nsenter, ip).
//!
//! Each test owns one machine named `be-…` under `/tmp/berth-engine-tests/<name>`; a
//! `Machine` guard cleans it up on drop, panic included, without going through the
//! supervisor (so a broken supervisor cannot leave a dockerd behind): it kills every
//! process that mentions the machine's directory, unmounts what is left, deletes the
//! namespace and the directory. The same cleanup runs before the test, for leftovers of
//! a run that was killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_engine::{
    BackoffConfig, EngineError, EngineSupervisor, Generation, MachineConfig, MachineState,
};

const TEST_ROOT: &str = "/tmp/berth-engine-tests";

// === Machine guard ===

struct Machine {
    name: String,
    dir: PathBuf,
    supervisor: EngineSupervisor,
}

impl Machine {
    fn new(name: &str) -> Self {
        Self::with(name, |_| {})
    }

    fn with(name: &str, tweak: impl FnOnce(&mut MachineConfig)) -> Self {
        let dir = Path::new(TEST_ROOT).join(name);
        clean_up(name, &dir);
        let mut config = MachineConfig {
            name: name.to_owned(),
            state_dir: dir.clone(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(15),
            ..MachineConfig::default()
        };
        tweak(&mut config);
        let supervisor = EngineSupervisor::new(config).unwrap_or_else(|e| {
            panic!("these tests run real dockerd and need root and docker.io, containerd, runc, util-linux, iproute2: {e}")
        });
        Self {
            name: name.to_owned(),
            dir,
            supervisor,
        }
    }

    /// Another supervisor for the same machine, as a restarted berth would build.
    fn second_supervisor(&self, tweak: impl FnOnce(&mut MachineConfig)) -> EngineSupervisor {
        let mut config = MachineConfig {
            name: self.name.clone(),
            state_dir: self.dir.clone(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(15),
            ..MachineConfig::default()
        };
        tweak(&mut config);
        EngineSupervisor::new(config).unwrap()
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.join("dockerd.pid")
    }

    /// Live dockerd processes of this machine.
    fn dockerd_pids(&self) -> Vec<u32> {
        processes_with_arg_pair("--pidfile", &self.pidfile())
    }

    fn docker(&self, args: &[&str]) -> String {
        let host = format!("unix://{}", self.supervisor.socket_path().display());
        let output = Command::new("docker")
            .arg("-H")
            .arg(&host)
            .args(args)
            .output()
            .expect("run docker CLI");
        assert!(
            output.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn in_netns(&self, program: &str, args: &[&str]) -> String {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.supervisor.netns_path().display()))
            .arg("--")
            .arg(program)
            .args(args)
            .output()
            .expect("run nsenter");
        assert!(
            output.status.success(),
            "{program} {args:?} in netns failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Imports a busybox-static rootfs as `tag` (no registry needed).
    fn import_busybox(&self, tag: &str) {
        let rootfs = tempfile::tempdir().unwrap();
        let root = rootfs.path();
        for dir in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (Debian busybox-static)");
        for applet in ["sh", "echo", "cat", "ls", "sleep"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        let script = format!(
            "tar -C '{}' -c . | docker -H 'unix://{}' import --change 'CMD [\"sh\"]' --change 'ENV PATH=/bin' - '{tag}'",
            root.display(),
            self.supervisor.socket_path().display()
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "import failed: {script}");
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        clean_up(&self.name, &self.dir);
        let left = processes_mentioning(&self.dir);
        if !left.is_empty() && !std::thread::panicking() {
            panic!("processes of {} survived clean-up: {left:?}", self.name);
        }
    }
}

/// Kills every process of the machine, unmounts, removes netns and directory.
fn clean_up(name: &str, dir: &Path) {
    // dockerd first, so it can stop containerd and containers itself.
    terminate_all(&processes_with_arg_pair(
        "--pidfile",
        &dir.join("dockerd.pid"),
    ));
    terminate_all(&processes_mentioning(dir));
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut points: Vec<String> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| Path::new(p).starts_with(dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let netns = format!("berth-{name}");
    if Path::new("/var/run/netns").join(&netns).exists() {
        let _ = Command::new("ip").args(["netns", "del", &netns]).status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn terminate_all(pids: &[u32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids.iter().filter(|&&p| alive(p)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn cmdlines() -> Vec<(u32, Vec<String>)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && alive(pid))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

fn processes_with_arg_pair(flag: &str, value: &Path) -> Vec<u32> {
    let value = value.to_string_lossy();
    cmdlines()
        .into_iter()
        .filter(|(_, args)| args.windows(2).any(|w| w[0] == flag && w[1] == value))
        .map(|(pid, _)| pid)
        .collect()
}

fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let prefix = format!("{}/", dir.display());
    cmdlines()
        .into_iter()
        .filter(|(_, args)| args.iter().any(|a| a.contains(&prefix)))
        .map(|(pid, _)| pid)
        .collect()
}

/// Polls `condition` until it holds; patience from `BERTH_TEST_PATIENCE_SECS` (20 s).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let patience = std::env::var("BERTH_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let deadline = Instant::now() + Duration::from_secs(patience);
    while !condition() {
        assert!(Instant::now() < deadline, "not within {patience} s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_start_serves_the_docker_cli_and_concurrent_callers_share_one_dockerd() {
    let m = Machine::new("be-lazy");
    let sup = &m.supervisor;
    assert_eq!(sup.status().state, MachineState::Stopped);
    assert_eq!(sup.generation(), Generation::default());
    assert!(!sup.was_running_at_last_shutdown());
    assert!(m.dockerd_pids().is_empty(), "new() starts nothing");
    assert_eq!(
        sup.netns_path(),
        PathBuf::from("/var/run/netns/berth-be-lazy")
    );

    let begun = Instant::now();
    // A caller that gives up does not cancel the start: the others join it.
    let impatient = tokio::time::timeout(Duration::from_millis(1), sup.ensure_running()).await;
    assert!(impatient.is_err(), "a cold start takes longer than 1 ms");
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let sup = sup.clone();
            tokio::spawn(async move { sup.ensure_running().await })
        })
        .collect();
    let mut generations = Vec::new();
    for caller in callers {
        generations.push(caller.await.unwrap().expect("engine starts"));
    }
    eprintln!(
        "be-lazy: cold start via supervisor took {:?}",
        begun.elapsed()
    );
    assert!(generations.iter().all(|g| g.get() == 1), "{generations:?}");
    let pids = m.dockerd_pids();
    assert_eq!(pids.len(), 1, "one dockerd for 8 callers: {pids:?}");

    let status = sup.status();
    assert_eq!(status.state, MachineState::Running);
    assert_eq!(status.pid, Some(pids[0]));
    assert!(!status.adopted);
    let pidfile = std::fs::read_to_string(m.pidfile()).unwrap();
    assert_eq!(
        pidfile.trim(),
        pids[0].to_string(),
        "nsenter execs dockerd in place"
    );
    assert!(sup.was_running_at_last_shutdown());

    let version = m.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!version.trim().is_empty());

    // docker0 and dockerd's iptables chains live in the machine's namespace.
    m.in_netns("ip", &["link", "show", "docker0"]);
    let nat = m.in_netns("iptables", &["-t", "nat", "-S"]);
    assert!(nat.contains("-N DOCKER"), "{nat}");

    // Already running: same generation, no new process.
    assert_eq!(sup.ensure_running().await.unwrap().get(), 1);
    assert_eq!(m.dockerd_pids(), pids);

    sup.stop().await.unwrap();
    assert_eq!(sup.status().state, MachineState::Stopped);
    assert!(m.dockerd_pids().is_empty());
    assert!(
        !sup.was_running_at_last_shutdown(),
        "stop clears the marker"
    );
    assert!(sup.netns_path().exists(), "stop keeps the namespace");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("{}/exec", m.dir.display())),
        "stop leaves no mount under the exec root"
    );

    sup.teardown().await.unwrap();
    assert!(
        !sup.netns_path().exists(),
        "teardown removes the empty namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_dockerd_is_restarted_with_a_new_generation() {
    let m = Machine::new("be-kill");
    let sup = &m.supervisor;
    let first = sup.ensure_running().await.unwrap();
    let pid = sup.status().pid.unwrap();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the supervisor notices the exit", || {
        sup.status().state == MachineState::Stopped
    })
    .await;
    assert_eq!(sup.status().consecutive_failures, 1);
    assert!(
        sup.was_running_at_last_shutdown(),
        "a crash is not a stop: the marker stays"
    );

    let second = sup.ensure_running().await.unwrap();
    assert!(second > first, "{second} after {first}");
    let new_pid = sup.status().pid.unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(m.dockerd_pids(), [new_pid]);
    m.docker(&["info", "--format", "{{.ID}}"]);
    // The killed run's log was rotated, not lost.
    let previous = std::fs::read_to_string(m.dir.join("dockerd.log.1")).unwrap();
    assert!(previous.contains("API listen on"), "{previous}");

    sup.teardown().await.unwrap();
    assert!(m.dockerd_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wedged_dockerd_is_killed_and_restarted() {
    let m = Machine::with("be-wedge", |c| {
        c.liveness_timeout = Some(Duration::from_secs(2));
    });
    let sup = &m.supervisor;
    let first = sup.ensure_running().await.unwrap();
    let pid = sup.status().pid.unwrap();

    // Alive, but it answers nothing.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    eventually("the wedged dockerd is found and replaced", || {
        sup.running_generation().is_some_and(|g| g > first)
    })
    .await;
    let status = sup.status();
    let (failure, _) = status.last_failure.clone().unwrap();
    assert!(
        failure.contains("wedged") && failure.contains(&format!("pid {pid}")),
        "{failure}"
    );
    assert_eq!(status.consecutive_failures, 1);
    assert!(!alive(pid), "the wedged dockerd was not killed");
    let new_pid = status.pid.unwrap();
    assert_eq!(m.dockerd_pids(), [new_pid]);
    m.docker(&["info", "--format", "{{.ID}}"]);

    sup.teardown().await.unwrap();
    assert!(m.dockerd_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_start_keeps_an_imported_image_and_containers_run() {
    let m = Machine::new("be-keep");
    let sup = &m.supervisor;
    sup.ensure_running().await.unwrap();
    m.import_busybox("be-busybox:1");
    let out = m.docker(&["run", "--rm", "be-busybox:1", "echo", "hello from be-keep"]);
    assert_eq!(out.trim(), "hello from be-keep");

    // berth exiting: dockerd stops, the marker stays for the next berth start.
    sup.shutdown().await.unwrap();
    assert!(m.dockerd_pids().is_empty());
    assert!(sup.was_running_at_last_shutdown());
    let generation = sup.ensure_running().await.unwrap();
    assert_eq!(generation.get(), 2);
    let images = m.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "be-busybox:1"), "{images}");

    sup.teardown().await.unwrap();
    assert!(!sup.was_running_at_last_shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_left_by_an_earlier_berth_is_adopted_or_replaced() {
    let m = Machine::new("be-adopt");
    m.supervisor.ensure_running().await.unwrap();
    let pid = m.supervisor.status().pid.unwrap();

    // berth "dies" without stopping its engine: a new supervisor adopts the dockerd
    // that still answers.
    let second = m.second_supervisor(|_| {});
    assert!(second.was_running_at_last_shutdown());
    assert_eq!(second.status().state, MachineState::Stopped);
    assert_eq!(second.ensure_running().await.unwrap().get(), 1);
    let status = second.status();
    assert!(status.adopted);
    assert_eq!(status.pid, Some(pid));
    assert_eq!(m.dockerd_pids(), [pid]);

    // A leftover that no longer answers /_ping is stopped and replaced.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let third = m.second_supervisor(|c| c.stop_timeout = Duration::from_secs(1));
    assert_eq!(third.ensure_running().await.unwrap().get(), 1);
    let status = third.status();
    assert!(!status.adopted);
    assert_ne!(status.pid, Some(pid));
    assert_eq!(m.dockerd_pids(), [status.pid.unwrap()]);
    eventually("the adopting supervisor sees its dockerd gone", || {
        second.status().state == MachineState::Stopped
    })
    .await;

    third.teardown().await.unwrap();
    assert!(m.dockerd_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dockerd_args_fail_with_the_log_tail_then_give_up() {
    let m = Machine::with("be-badargs", |c| {
        c.dockerd_args = vec!["--no-such-flag".to_owned()];
        c.restart_backoff = BackoffConfig {
            give_up_after: 2,
            ..BackoffConfig::default()
        };
    });
    let sup = &m.supervisor;
    let err = sup.ensure_running().await.unwrap_err();
    assert!(matches!(err, EngineError::Exited { .. }), "{err:?}");
    let tail = err.log_tail().unwrap();
    assert!(tail.contains("unknown flag: --no-such-flag"), "{tail}");
    assert!(err.to_string().contains("--no-such-flag"), "{err}");
    assert_eq!(sup.status().state, MachineState::Stopped);
    assert_eq!(sup.status().consecutive_failures, 1);
    assert!(sup.log_tail(5).contains("--no-such-flag"));
    assert!(!sup.was_running_at_last_shutdown());

    // The second consecutive failure reaches give_up_after: Failed, and the next call
    // answers at once without starting anything.
    sup.ensure_running().await.unwrap_err();
    assert!(matches!(sup.status().state, MachineState::Failed { .. }));
    let begun = Instant::now();
    let err = sup.ensure_running().await.unwrap_err();
    assert!(
        matches!(err, EngineError::GaveUp { failures: 2, .. }),
        "{err:?}"
    );
    assert!(err.log_tail().unwrap().contains("--no-such-flag"));
    assert!(begun.elapsed() < Duration::from_millis(100));

    // stop resets a failed machine.
    sup.stop().await.unwrap();
    assert_eq!(sup.status().state, MachineState::Stopped);
    assert_eq!(sup.status().consecutive_failures, 0);
    assert!(m.dockerd_pids().is_empty());
    sup.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_not_ready_in_time_is_killed_and_reported_with_the_log_tail() {
    let m = Machine::with("be-slow", |c| c.start_timeout = Duration::from_millis(100));
    let err = m.supervisor.ensure_running().await.unwrap_err();
    assert!(matches!(err, EngineError::StartTimeout { .. }), "{err:?}");
    assert!(err.log_tail().is_some());
    assert!(m.dockerd_pids().is_empty(), "the slow dockerd was stopped");
    assert_eq!(m.supervisor.status().state, MachineState::Stopped);
    m.supervisor.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cuts_a_backoff_wait_short() {
    let m = Machine::with("be-backoff", |c| {
        c.dockerd_args = vec!["--no-such-flag".to_owned()];
        c.restart_backoff = BackoffConfig {
            initial: Duration::from_secs(60),
            ..BackoffConfig::default()
        };
    });
    let sup = &m.supervisor;
    // Two failures: the next attempt would wait a minute first.
    sup.ensure_running().await.unwrap_err();
    sup.ensure_running().await.unwrap_err();
    let waiting = tokio::spawn({
        let sup = sup.clone();
        async move { sup.ensure_running().await }
    });
    eventually("the third attempt is waiting", || {
        sup.status().state == MachineState::Starting
    })
    .await;
    let begun = Instant::now();
    sup.stop().await.unwrap();
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "{:?}",
        begun.elapsed()
    );
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, EngineError::StopRequested { .. }), "{err:?}");
    assert_eq!(sup.status().state, MachineState::Stopped);
    assert_eq!(sup.status().consecutive_failures, 0);
    sup.teardown().await.unwrap();
}

#[test]
fn missing_dockerd_names_the_debian_package() {
    let config = MachineConfig {
        name: "be-missing".to_owned(),
        state_dir: PathBuf::from(TEST_ROOT).join("be-missing"),
        dockerd: PathBuf::from("/nonexistent/dockerd"),
        ..MachineConfig::default()
    };
    let err = EngineSupervisor::new(config).unwrap_err();
    assert!(err.is_missing_prerequisite(), "{err:?}");
    assert!(
        err.to_string().contains("apt-get install docker.io"),
        "{err}"
    );
    assert!(!Path::new(TEST_ROOT).join("be-missing").exists());
}

#[test]
fn bad_names_and_long_state_dirs_are_rejected() {
    let err = EngineSupervisor::new(MachineConfig::named("Not_Valid")).unwrap_err();
    assert!(matches!(err, EngineError::InvalidName { .. }), "{err:?}");
    let config = MachineConfig {
        name: "be-long".to_owned(),
        state_dir: PathBuf::from(format!("/tmp/{}", "d".repeat(90))),
        ..MachineConfig::default()
    };
    let err = EngineSupervisor::new(config).unwrap_err();
    assert!(matches!(err, EngineError::PathTooLong { .. }), "{err:?}");
}
