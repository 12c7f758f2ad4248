//! Conformance: the real docker CLI, run directly against a real dockerd and through
//! berth, must show the same thing (gateway core, issue 2; style guide principle 4).
//!
//! One engine and one berth serve every test in this binary. Two kinds of checks:
//! - `conform`: the same script of commands runs once per side on twin objects
//!   (`<base>-direct`, `<base>-berth`); exit codes and normalized output of every step
//!   must match, and the direct run proves that the script itself is right.
//! - `same`: a read-only command on one object, both ways, byte for byte.
//!
//! Tests run in parallel threads and isolate themselves by names and labels.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_test::{
    normalize, procfs, pseudo_random_bytes, sha256_hex, CliOutput, DockerCli, Fronted,
};

const IMAGE: &str = "busybox:latest";

fn setup() -> &'static Fronted {
    static SETUP: OnceLock<Result<Fronted, String>> = OnceLock::new();
    berth_test::shared(&SETUP, || {
        let name = format!("bt-cc-{}", std::process::id());
        Fronted::start(Path::new(env!("CARGO_BIN_EXE_berth")), &name, IMAGE)
    })
}

fn direct() -> DockerCli {
    DockerCli::new(setup().engine.host())
}

fn via() -> DockerCli {
    let berth = &setup().berth;
    assert!(
        procfs::alive(berth.pid()),
        "berth is no longer running; it printed:\n{}",
        berth.stderr_log()
    );
    DockerCli::new(berth.host())
}

fn berth_log_tail() -> String {
    let log = setup().berth.stderr_log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

// === conformance runner ===

/// One side of a conformance run: its CLI and what each step showed.
struct Side {
    which: &'static str,
    cli: DockerCli,
    transcript: RefCell<Vec<String>>,
}

impl Side {
    /// The side's twin of an object name: `<base>-direct` or `<base>-berth`.
    fn name(&self, base: &str) -> String {
        format!("{base}-{}", self.which)
    }

    /// A label `key=<value>-<side>`.
    fn label(&self, key: &str, value: &str) -> String {
        format!("{key}={value}-{}", self.which)
    }

    /// Runs `docker args…` and records the exit code and normalized output.
    fn step(&self, args: &[&str]) -> CliOutput {
        self.step_as(args, |o| {
            format!(
                "exit {}\n  stdout: {}\n  stderr: {}",
                o.code,
                self.scrub(&o.stdout),
                self.scrub(&o.stderr)
            )
        })
    }

    /// Runs `docker args…` and records what `view` extracts (for output that changes
    /// from run to run, such as process tables and CPU figures).
    fn step_as(&self, args: &[&str], view: impl FnOnce(&CliOutput) -> String) -> CliOutput {
        let out = self.cli.run(args);
        let shown = if out.timed_out {
            format!("TIMED OUT after {:?}", out.elapsed)
        } else {
            view(&out)
        };
        self.transcript.borrow_mut().push(format!(
            "`docker {}` → {}",
            self.scrub(&args.join(" ")),
            shown
        ));
        out
    }

    /// Records a fact observed by the script itself.
    fn note(&self, what: &str) {
        self.transcript.borrow_mut().push(self.scrub(what));
    }

    /// Asserts success; the message names the side.
    #[track_caller]
    fn ok(&self, out: &CliOutput) -> String {
        assert!(
            out.success(),
            "[{} side] {out}\nberth log tail:\n{}",
            self.which,
            berth_log_tail()
        );
        out.stdout.trim_end().to_owned()
    }

    fn scrub(&self, text: &str) -> String {
        normalize(&text.replace(&format!("-{}", self.which), "-<side>"))
    }
}

/// Runs `script` once directly and once through berth, then compares the transcripts.
fn conform(script: impl Fn(&Side)) {
    let sides = [
        Side {
            which: "direct",
            cli: direct(),
            transcript: RefCell::default(),
        },
        Side {
            which: "berth",
            cli: via(),
            transcript: RefCell::default(),
        },
    ];
    for side in &sides {
        script(side);
    }
    let d = sides[0].transcript.borrow();
    let v = sides[1].transcript.borrow();
    let mut diffs = Vec::new();
    for i in 0..d.len().max(v.len()) {
        let (a, b) = (d.get(i), v.get(i));
        if a != b {
            diffs.push(format!(
                "step {i}:\n  direct: {}\n  berth:  {}",
                a.map_or("<missing>", String::as_str),
                b.map_or("<missing>", String::as_str)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "berth differs from direct dockerd:\n{}\n\nfull direct transcript:\n{}\n\nberth log tail:\n{}",
        diffs.join("\n"),
        d.join("\n"),
        berth_log_tail()
    );
}

/// A read-only command on one object, both ways: everything must be identical.
fn same(args: &[&str]) -> String {
    let d = direct().run(args);
    let v = via().run(args);
    assert!(d.success(), "direct run failed, the test is wrong: {d}");
    assert_eq!(
        (d.code, &d.stdout, &d.stderr),
        (v.code, &v.stdout, &v.stderr),
        "`docker {}` differs through berth\ndirect: {d}\nberth: {v}",
        args.join(" ")
    );
    d.stdout
}

// === run, exit codes, errors ===

#[test]
fn run_exit_codes_and_error_messages_match_direct() {
    conform(|s| {
        let out = s.step(&["run", "--rm", IMAGE, "sh", "-c", "exit 3"]);
        assert_eq!(out.code, 3, "[{}] {out}", s.which);
        let out = s.step(&["run", "--rm", IMAGE, "echo", "hello"]);
        assert_eq!(s.ok(&out), "hello");
        let name = s.name("cc-split");
        let out = s.step(&[
            "run",
            "--rm",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 2",
        ]);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (2, "out\n", "err\n"),
            "[{}] {out}",
            s.which
        );
        let out = s.step(&["run", "--rm", IMAGE, "no-such-binary"]);
        assert_eq!(out.code, 127, "[{}] {out}", s.which);
        let out = s.step(&[
            "run",
            "--rm",
            "--pull",
            "never",
            "cc-no-such-image:1",
            "true",
        ]);
        assert_eq!(out.code, 125, "[{}] {out}", s.which);
        let missing = s.name("cc-nope");
        let out = s.step(&["rm", &missing]);
        assert!(
            out.stderr.contains("No such container"),
            "[{}] {out}",
            s.which
        );
        s.step(&["inspect", &missing]);
        s.step(&["logs", &missing]);
    });
}

#[test]
fn start_of_a_running_container_and_stop_of_a_stopped_one_exit_0() {
    conform(|s| {
        let name = s.name("cc-304");
        s.ok(&s.step(&["run", "-d", "--name", &name, IMAGE, "sleep", "300"]));
        // 304 Not Modified: not an error for the CLI (notes 3.2).
        assert_eq!(s.ok(&s.step(&["start", &name])), name);
        s.ok(&s.step(&["stop", "-t", "0", &name]));
        assert_eq!(s.ok(&s.step(&["stop", &name])), name);
        s.ok(&s.step(&["rm", &name]));
    });
}

// === container lifecycle ===

#[test]
fn container_lifecycle_matches_direct() {
    conform(|s| {
        let name = s.name("cc-life");
        let renamed = s.name("cc-life2");
        let label = s.label("cc", "life");
        s.ok(&s.step(&[
            "create", "--name", &name, "--label", &label, IMAGE, "sleep", "300",
        ]));
        s.step_as(&["inspect", "-f", "{{.State.Status}}", &name], |o| {
            format!("{} {}", o.code, o.stdout.trim())
        });
        s.ok(&s.step(&["start", &name]));
        s.step_as(&["top", &name], |o| {
            format!("{} has-sleep={}", o.code, o.stdout.contains("sleep 300"))
        });
        s.ok(&s.step(&["pause", &name]));
        s.step(&["inspect", "-f", "{{.State.Status}}", &name]);
        s.step(&["pause", &name]); // 409: already paused
        s.ok(&s.step(&["unpause", &name]));
        s.step_as(
            &[
                "stats",
                "--no-stream",
                "--format",
                "{{.Name}} {{.Container}}",
                &name,
            ],
            |o| {
                format!(
                    "{} {}",
                    o.code,
                    s.scrub(o.stdout.split_whitespace().next().unwrap_or(""))
                )
            },
        );
        s.ok(&s.step(&["rename", &name, &renamed]));
        s.step(&["inspect", "-f", "{{.Name}}", &renamed]);
        s.ok(&s.step(&["restart", "-t", "0", &renamed]));
        s.step(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.RestartCount}}",
            &renamed,
        ]);
        s.ok(&s.step(&["kill", &renamed]));
        assert_eq!(s.ok(&s.step(&["wait", &renamed])), "137");
        s.step(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}} {{.Image}} {{.Command}} {{.Labels}}",
        ]);
        s.step(&["kill", &renamed]); // 409: not running
        s.ok(&s.step(&["rm", &renamed]));
        s.step(&["stop", &renamed]); // 404
    });
}

#[test]
fn wait_returns_when_the_container_exits_with_its_code() {
    conform(|s| {
        let name = s.name("cc-wait");
        s.ok(&s.step(&[
            "run",
            "-d",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "sleep 1; exit 5",
        ]));
        let out = s.step(&["wait", &name]);
        assert_eq!(s.ok(&out), "5");
        s.ok(&s.step(&["rm", &name]));
    });
}

#[test]
fn inspect_ps_top_port_and_logs_of_one_container_are_identical_both_ways() {
    let cli = via();
    let name = "cc-same";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "cc=same",
        "-e",
        "X=1",
        IMAGE,
        "sh",
        "-c",
        "echo one; echo two >&2; exec sleep 300",
    ])
    .ok();
    berth_test::assert_eventually!(
        cli.run(&["logs", name]).stderr.contains("two"),
        "the container did not print"
    );
    same(&["inspect", name]);
    same(&["container", "inspect", "--size", name]);
    same(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        "label=cc=same",
        "--format",
        "{{.ID}} {{.Image}} {{.Command}} {{.Names}} {{.Labels}} {{.Ports}}",
    ]);
    same(&["top", name, "-o", "pid,args"]);
    same(&["port", name]);
    let logs = same(&["logs", "-t", name]);
    assert!(logs.contains("one"), "{logs}");
    same(&["logs", "--tail", "1", name]);
    cli.run(&["rm", "-f", name]).ok();
}

// === logs ===

/// Lines of a streaming command with the time each arrived.
fn timed_lines(
    mut cmd: std::process::Command,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<(Instant, String)>,
) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning docker");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for_line(
    rx: &std::sync::mpsc::Receiver<(Instant, String)>,
    want: &str,
    within: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while let Ok((at, line)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains(want) {
            return Some(at);
        }
    }
    None
}

#[test]
fn logs_follow_sees_a_line_printed_later_as_soon_as_direct_does() {
    let cli = via();
    let name = "cc-follow";
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&[
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "echo first; sleep 3; echo second; sleep 1",
    ])
    .ok();
    let (mut d_child, d_rx) = timed_lines(direct().command(&["logs", "-f", name]));
    let (mut v_child, v_rx) = timed_lines(cli.command(&["logs", "-f", name]));
    let v_first = wait_for_line(&v_rx, "first", Duration::from_secs(10));
    let v_second = wait_for_line(&v_rx, "second", Duration::from_secs(15));
    let d_second = wait_for_line(&d_rx, "second", Duration::from_secs(15));
    let (Some(v_first), Some(v_second), Some(d_second)) = (v_first, v_second, d_second) else {
        let _ = v_child.kill();
        let _ = d_child.kill();
        panic!(
            "logs -f through berth: first {v_first:?}, second {v_second:?}; direct second {d_second:?}\nberth log:\n{}",
            berth_log_tail()
        );
    };
    assert!(
        v_second.duration_since(v_first) >= Duration::from_secs(2),
        "the second line came with the first: output was buffered"
    );
    let lag = if v_second > d_second {
        v_second - d_second
    } else {
        d_second - v_second
    };
    assert!(
        lag < berth_test::patient(Duration::from_millis(500)),
        "through berth the line came {lag:?} apart from direct"
    );
    // The follow ends when the container exits, with status 0, both ways.
    for (which, child) in [("berth", &mut v_child), ("direct", &mut d_child)] {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "{which}: logs -f did not end cleanly: {status:?}"
        );
    }
    same(&["logs", name]);
    cli.run(&["rm", "-f", name]).ok();
}

// === exec and attach ===

/// Runs `docker args…` under script(1), which gives the CLI a pseudo-terminal.
fn with_tty(cli: &DockerCli, args: &str) -> (i32, String) {
    let cmd = format!("{} -H {} {args}", DockerCli::binary().display(), cli.host());
    let out = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux (bsdutils)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn exec_with_piped_stdin_split_streams_exit_codes_and_a_tty_matches_direct() {
    conform(|s| {
        let name = s.name("cc-exec");
        s.ok(&s.step(&["run", "-d", "--name", &name, IMAGE, "sleep", "300"]));
        let out = s.cli.run_stdin(
            &["exec", "-i", &name, "sh", "-c", "cat; echo done"],
            b"piped\n",
        );
        s.note(&format!("exec -i: {} {:?}", out.code, out.stdout));
        assert_eq!(s.ok(&out), "piped\ndone");
        s.step(&["exec", &name, "sh", "-c", "echo out; echo err >&2"]);
        let out = s.step(&["exec", &name, "sh", "-c", "exit 7"]);
        assert_eq!(out.code, 7, "[{}] {out}", s.which);
        s.step(&[
            "exec",
            "-w",
            "/tmp",
            "-e",
            "V=x",
            &name,
            "sh",
            "-c",
            "pwd; echo $V",
        ]);
        let (code, text) = with_tty(
            &s.cli,
            &format!("exec -it {name} sh -c 'tty; echo tty-ok; exit 6'"),
        );
        s.note(&format!(
            "exec -it: exit {code}, pty {}, ok {}, crlf {}",
            text.contains("/dev/pts/"),
            text.contains("tty-ok"),
            text.contains("tty-ok\r\n")
        ));
        assert!(
            text.contains("/dev/pts/") && text.contains("tty-ok"),
            "[{}] exec -it printed {text:?}",
            s.which
        );
        assert_eq!(
            code, 6,
            "[{}] exec -it exit code; printed {text:?}",
            s.which
        );
        let (code, text) = with_tty(&s.cli, &format!("run -it --rm {IMAGE} sh -c 'tty; exit 5'"));
        s.note(&format!(
            "run -it: exit {code}, pty {}",
            text.contains("/dev/pts/")
        ));
        assert_eq!(code, 5, "[{}] run -it exit code; printed {text:?}", s.which);
        s.ok(&s.step(&["rm", "-f", &name]));
        s.step(&["exec", &name, "true"]); // gone
    });
}

#[test]
fn attach_carries_stdin_and_output_and_ends_with_the_exit_code() {
    conform(|s| {
        let name = s.name("cc-attach");
        s.ok(&s.step(&[
            "run",
            "-d",
            "-i",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "read line; echo got:$line; echo err:$line >&2; exit 4",
        ]));
        let mut child = s
            .cli
            .command(&["attach", &name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Keep stdin open: EOF on stdin would end the attach (notes 4.3).
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(stdin);
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        s.note(&format!(
            "attach: {:?} stdout {out:?} stderr {err:?}",
            status.map(|s| s.code())
        ));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(4),
            "[{}] attach: stdout {out:?} stderr {err:?}",
            s.which
        );
        assert_eq!(out, "got:hello\n", "[{}]", s.which);
        s.ok(&s.step(&["rm", &name]));
    });
}

#[test]
fn stdin_eof_reaches_run_i_and_later_output_still_arrives() {
    conform(|s| {
        let out = s.cli.run_stdin(
            &[
                "run",
                "-i",
                "--rm",
                IMAGE,
                "sh",
                "-c",
                "cat; sleep 1; echo after",
            ],
            b"hi\n",
        );
        s.note(&format!(
            "run -i: exit {} stdout {:?} stderr {:?} took-a-second {}",
            out.code,
            out.stdout,
            out.stderr,
            out.elapsed >= Duration::from_secs(1)
        ));
        assert_eq!(s.ok(&out), "hi\nafter");
        assert!(
            out.elapsed < berth_test::patient(Duration::from_secs(20)),
            "[{}] took {:?}",
            s.which,
            out.elapsed
        );
    });
}

#[test]
fn run_i_cat_streams_200_megabytes_unchanged() {
    const SIZE: usize = 200 << 20;
    let data = pseudo_random_bytes(SIZE, 200);
    let want = sha256_hex(&data);
    let mut child = via()
        .command(&["run", "--rm", "-i", IMAGE, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(SIZE);
        stdout.read_to_end(&mut got).map(|_| got)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let wrote = writer.join().unwrap();
    let got = reader.join().unwrap().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "docker run -i cat: {status:?} {err}\nberth:\n{}",
        berth_log_tail()
    );
    assert!(wrote.is_ok(), "writing stdin: {wrote:?}");
    assert_eq!(got.len(), SIZE, "bytes out");
    assert_eq!(sha256_hex(&got), want, "sha256 of what came back");
}

// === files and images ===

#[test]
fn cp_both_ways_keeps_100_megabytes_intact() {
    let cli = via();
    let name = "cc-cp";
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random_bytes(100 << 20, 100);
    let want = sha256_hex(&data);
    std::fs::write(dir.path().join("big"), &data).unwrap();
    drop(data);
    let _ = cli.run(&["rm", "-f", name]);
    cli.run(&["run", "-d", "--name", name, IMAGE, "sleep", "300"])
        .ok();
    cli.run(&[
        "cp",
        dir.path().join("big").to_str().unwrap(),
        &format!("{name}:/tmp/big"),
    ])
    .ok();
    let inside = cli.run(&["exec", name, "sha256sum", "/tmp/big"]);
    assert!(inside.ok().starts_with(&want), "inside: {inside}");
    let back = dir.path().join("back");
    cli.run(&["cp", &format!("{name}:/tmp/big"), back.to_str().unwrap()])
        .ok();
    assert_eq!(
        sha256_hex(&std::fs::read(&back).unwrap()),
        want,
        "copied back"
    );
    // To stdout as a tar, and the change list, both as direct.
    let tar = cli.run(&["cp", &format!("{name}:/etc/hostname"), "-"]);
    assert!(tar.ok().contains("hostname"), "{tar}");
    let diff = same(&["diff", name]);
    assert!(diff.contains("A /tmp/big"), "{diff}");
    cli.run(&["rm", "-f", name]).ok();
}

#[test]
fn commit_export_import_save_load_tag_history_and_rmi_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    conform(|s| {
        let name = s.name("cc-img");
        let committed = format!("{}:1", s.name("cc-committed"));
        let tagged = format!("{}:2", s.name("cc-tagged"));
        let imported = format!("{}:1", s.name("cc-imported"));
        s.ok(&s.step(&[
            "run",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "echo committed > /marker",
        ]));
        s.ok(&s.step(&[
            "commit",
            "-m",
            "cc",
            "-c",
            "LABEL cc=commit",
            &name,
            &committed,
        ]));
        assert_eq!(
            s.ok(&s.step(&["run", "--rm", &committed, "cat", "/marker"])),
            "committed"
        );
        s.step(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}|{{.Comment}}",
            &committed,
        ]);
        s.ok(&s.step(&["tag", &committed, &tagged]));
        let id = s.ok(&s.step(&["image", "inspect", "-f", "{{.Id}}", &tagged]));
        let saved = dir.path().join(format!("{}.tar", s.name("saved")));
        s.ok(&s.step(&["save", "-o", saved.to_str().unwrap(), &committed, &tagged]));
        s.ok(&s.step(&["rmi", &committed, &tagged]));
        s.step(&["image", "inspect", &committed]);
        let loaded = s.ok(&s.step(&["load", "-i", saved.to_str().unwrap()]));
        assert!(loaded.contains(&committed), "[{}] {loaded}", s.which);
        let again = s.ok(&s.step(&["image", "inspect", "-f", "{{.Id}}", &tagged]));
        assert_eq!(again, id, "[{}] the loaded image differs", s.which);
        let exported = dir.path().join(format!("{}.tar", s.name("export")));
        s.ok(&s.step(&["export", "-o", exported.to_str().unwrap(), &name]));
        s.ok(&s.step(&[
            "import",
            "-c",
            "ENV PATH=/bin",
            exported.to_str().unwrap(),
            &imported,
        ]));
        assert_eq!(
            s.ok(&s.step(&["run", "--rm", &imported, "cat", "/marker"])),
            "committed"
        );
        s.step(&["rmi", IMAGE]); // in use: 409
        s.ok(&s.step(&["rm", &name]));
        s.ok(&s.step(&["rmi", &committed, &tagged, &imported]));
    });
}

#[test]
fn image_views_of_one_image_are_identical_both_ways() {
    same(&["image", "inspect", IMAGE]);
    same(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.CreatedBy}} {{.Size}} {{.Comment}}",
        IMAGE,
    ]);
    same(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
        IMAGE,
    ]);
}

#[test]
fn legacy_build_with_a_60_megabyte_context() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("blob"), pseudo_random_bytes(60 << 20, 60)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL cc=build\nCOPY blob /blob\nRUN wc -c < /blob > /size\n"),
    )
    .unwrap();
    let cli = via().env("DOCKER_BUILDKIT", "0");
    let out = cli.run(&["build", "-t", "cc-built:1", ctx.to_str().unwrap()]);
    assert!(out.success(), "{out}\nberth:\n{}", berth_log_tail());
    assert!(
        out.stdout.contains("Successfully tagged cc-built:1"),
        "{out}"
    );
    let size = via().run(&["run", "--rm", "cc-built:1", "cat", "/size"]);
    assert_eq!(size.ok(), (60 << 20).to_string());
    // A broken Dockerfile: the engine's error, as direct (notes 1.6).
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("Dockerfile"), "FROM\n").unwrap();
    let d = direct()
        .env("DOCKER_BUILDKIT", "0")
        .run(&["build", broken.to_str().unwrap()]);
    let v = cli.run(&["build", broken.to_str().unwrap()]);
    assert_ne!(d.code, 0, "{d}");
    assert_eq!(
        (d.code, normalize(&d.stderr)),
        (v.code, normalize(&v.stderr)),
        "direct: {d}\nberth: {v}"
    );
    via().run(&["rmi", "cc-built:1"]).ok();
}

#[test]
fn prune_commands_remove_only_what_the_label_filter_selects() {
    conform(|s| {
        let label = s.label("ccprune", "x");
        let filter = format!("label={label}");
        let keep = s.name("cc-keep");
        s.ok(&s.step(&["create", "--name", &keep, IMAGE, "true"]));
        s.ok(&s.step(&["create", "--label", &label, IMAGE, "true"]));
        let out = s.step(&["container", "prune", "-f", "--filter", &filter]);
        assert!(
            s.ok(&out).contains("Deleted Containers"),
            "[{}] {out}",
            s.which
        );
        s.ok(&s.step(&["inspect", "-f", "{{.Name}}", &keep]));
        // An untagged (dangling) image with the label, made by commit.
        s.ok(&s.step(&["commit", "-c", &format!("LABEL {label}"), &keep]));
        let out = s.step(&["image", "prune", "-f", "--filter", &filter]);
        assert!(
            s.ok(&out).contains("deleted: sha256:"),
            "[{}] {out}",
            s.which
        );
        let vol = s.name("cc-vol-prune");
        s.ok(&s.step(&["volume", "create", "--label", &label, &vol]));
        let out = s.step(&["volume", "prune", "-f", "--filter", &filter]);
        s.note(&format!(
            "volume prune lists it: {}",
            out.stdout.contains(&vol)
        ));
        s.step(&["volume", "rm", "-f", &vol]);
        let net = s.name("cc-net-prune");
        s.ok(&s.step(&["network", "create", "--label", &label, &net]));
        let out = s.step(&["network", "prune", "-f", "--filter", &filter]);
        assert!(s.ok(&out).contains(&net), "[{}] {out}", s.which);
        s.ok(&s.step(&["rm", &keep]));
    });
}

// === volumes, networks, system ===

#[test]
fn volume_and_network_commands_match_direct() {
    conform(|s| {
        let vol = s.name("cc-vol");
        let label = s.label("ccvol", "x");
        s.ok(&s.step(&["volume", "create", "--label", &label, &vol]));
        s.step(&["volume", "ls", "-q", "--filter", &format!("label={label}")]);
        s.step(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{.Labels}} {{.Scope}}",
            &vol,
        ]);
        s.ok(&s.step(&[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/data"),
            IMAGE,
            "sh",
            "-c",
            "echo kept > /data/f",
        ]));
        s.step(&[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/data:ro"),
            IMAGE,
            "cat",
            "/data/f",
        ]);
        s.step(&["volume", "create", &vol]); // exists: same name back
        let holder = s.name("cc-vol-holder");
        s.ok(&s.step(&[
            "create",
            "--name",
            &holder,
            "-v",
            &format!("{vol}:/data"),
            IMAGE,
            "true",
        ]));
        s.step(&["volume", "rm", &vol]); // in use: 409
        s.ok(&s.step(&["rm", &holder]));
        s.ok(&s.step(&["volume", "rm", &vol]));
        s.step(&["volume", "inspect", &vol]); // 404

        let net = s.name("cc-net");
        s.ok(&s.step(&["network", "create", "--label", &label, &net]));
        s.step(&[
            "network",
            "ls",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ]);
        s.step(&[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}} {{.Labels}}",
            &net,
        ]);
        let member = s.name("cc-net-member");
        s.ok(&s.step(&["run", "-d", "--name", &member, IMAGE, "sleep", "300"]));
        s.ok(&s.step(&["network", "connect", &net, &member]));
        s.step_as(&["exec", &member, "ip", "-o", "-4", "addr"], |o| {
            format!(
                "{} ipv4-interfaces {}",
                o.code,
                o.stdout.matches("inet ").count()
            )
        });
        s.step(&["network", "connect", &net, &member]); // already: error
        s.ok(&s.step(&["network", "disconnect", &net, &member]));
        s.ok(&s.step(&["rm", "-f", &member]));
        s.ok(&s.step(&["network", "rm", &net]));
        s.step(&["network", "rm", &net]); // 404
    });
}

#[test]
fn info_version_and_system_df_match_direct() {
    same(&["version", "--format", "{{json .Server}}"]);
    same(&["info", "--format", "{{.ID}} {{.Name}} {{.Driver}} {{.OperatingSystem}} {{.ServerVersion}} {{.KernelVersion}} {{.CgroupVersion}} {{.DockerRootDir}}"]);
    let d = direct().run(&["system", "df", "--format", "{{.Type}}"]);
    let v = via().run(&["system", "df", "--format", "{{.Type}}"]);
    assert_eq!(
        (d.code, &d.stdout),
        (v.code, &v.stdout),
        "direct: {d}\nberth: {v}"
    );
    assert!(d.ok().contains("Images"), "{d}");
    let v = via().run(&["system", "df", "-v"]);
    assert!(v.ok().contains("Images space usage"), "{v}");
    let v = via().run(&["version"]);
    assert!(v.ok().contains("Server:"), "{v}");
}

#[test]
fn events_with_since_until_and_live_show_a_run_made_through_berth() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // Live: subscribe through berth, then act through berth.
    let (mut live, rx) = timed_lines(via().command(&[
        "events",
        "--filter",
        "label=cc=events-live",
        "--format",
        "{{.Type}} {{.Action}}",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    let since = now() - 1.0;
    via()
        .run(&["run", "--rm", "--label", "cc=events-live", IMAGE, "true"])
        .ok();
    let destroyed = wait_for_line(&rx, "container destroy", Duration::from_secs(15));
    let _ = live.kill();
    let _ = live.wait();
    assert!(
        destroyed.is_some(),
        "docker events through berth did not show the run live"
    );
    // Bounded replay: the same history both ways.
    let until = format!("{:.3}", now() + 0.5);
    let since = format!("{since:.3}");
    let args = [
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "label=cc=events-live",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.image}}",
    ];
    let replay = same(&args);
    for action in ["create", "start", "die", "destroy"] {
        assert!(
            replay.contains(&format!("container {action} {IMAGE}")),
            "no {action} in:\n{replay}"
        );
    }
}
