//! A bounded, stable-toolchain stand-in for the cargo-fuzz targets (`fuzz/`, which need
//! nightly for their instrumentation): pseudo-random and mutated inputs through the same
//! entry points, which must never panic. Deterministic (fixed seeds), so a failure
//! reproduces; `BERTH_FUZZ_ITERATIONS` raises the count for a longer run.

use berth_policy::fuzzing;
use berth_test::mutate::{iterations, Mutator, Rng};

const SEEDS: &[&str] = &[
    r#"{"Image":"busybox","HostConfig":{"Privileged":true,"CapAdd":["NET_ADMIN"]}}"#,
    r#"{"image":"x","hostconfig":{"binds":["/srv/../etc:/x:ro"],"Mounts":[{"Type":"bind","Source":"/etc"}]}}"#,
    r#"{"HostConfig":{"NetworkMode":"host","PidMode":"host","IpcMode":"host","SecurityOpt":["seccomp=unconfined"]}}"#,
    r#"{"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}],"DeviceRequests":[{"Count":-1}],"Sysctls":{"kernel.x":"1"}}}"#,
    r#"{"Privileged":true,"User":"0:0","Cmd":["sh"],"Env":null}"#,
    r#"{"Name":"v","Driver":"local","DriverOpts":{"o":"bind","device":"/etc","type":"none"}}"#,
    r#"{"HostConfig":null,"HostConfig":{"Mounts":[null]},"HOSTCONFIG":{"PRIVILEGED":false}}"#,
];

/// Tokens that steer mutations toward what the policy parses.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "\"HostConfig\":",
    "\"Privileged\":true",
    "\"Binds\":[\"/etc:/x\"]",
    "\\u0000",
    "\u{17f}",
    "\u{212a}",
    "..",
    "//",
    "1e999",
    "-0",
    "\"\\ud800\"",
];

const MUTATOR: Mutator<'static> = Mutator {
    tokens: TOKENS,
    lower_case: true,
};

/// The differential corpus (`tests/create-bodies/`, `tests/exec-bodies/`, sent to a real dockerd by
/// `crates/berth/tests/body_corpus.rs`), as seeds: every body as it is, then mutated.
fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut bodies: Vec<Vec<u8>> = ["create-bodies", "exec-bodies"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).expect("a corpus directory"))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    bodies.sort();
    assert!(bodies.len() >= 40, "the corpus shrank");
    bodies
}

#[test]
fn create_bodies_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let corpus = corpus();
    let mut seeds: Vec<&[u8]> = SEEDS.iter().map(|s| s.as_bytes()).collect();
    seeds.extend(corpus.iter().map(Vec::as_slice));
    for seed in &seeds {
        fuzzing::create_body(seed);
    }
    for i in 0..iterations(20_000) {
        let seed = seeds[i % seeds.len()];
        let body = if i % 7 == 0 {
            (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect()
        } else {
            MUTATOR.mutate(&mut rng, seed)
        };
        fuzzing::create_body(&body);
    }
}

#[test]
fn request_paths_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let seeds = [
        "POST /v1.41/containers/create?name=x",
        "GET /v1.24/containers/a/b/json",
        "POST /containers/%2e%2e/exec",
        "POST /images/create?fromImage=busybox&tag=latest",
        "POST /build?networkmode=host",
        "DELETE /v9999999999999.1/volumes/x",
    ];
    for i in 0..iterations(20_000) {
        let line = MUTATOR.mutate(&mut rng, seeds[i % seeds.len()].as_bytes());
        fuzzing::request_path(&line);
    }
}

#[test]
fn policy_files_never_panic() {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    let seeds = [
        include_str!("../examples/policy-strict.toml"),
        include_str!("../examples/policy-readonly.toml"),
        "[[rule]]\nname = \"a\"\naction = \"deny\"\nclients = [\"tls:CN=*\"]\npaths = [\"/**\"]\n",
    ];
    for i in 0..iterations(20_000) / 4 {
        let text = MUTATOR.mutate(&mut rng, seeds[i % seeds.len()].as_bytes());
        fuzzing::policy_toml(&text);
    }
}
