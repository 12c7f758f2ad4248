//! A bounded, stable-toolchain stand-in for the cargo-fuzz targets (`fuzz/`, which need
//! nightly for their instrumentation): pseudo-random and mutated inputs through the same
//! entry points, which must never panic. Deterministic (fixed seeds), so a failure
//! reproduces; `BERTH_FUZZ_ITERATIONS` raises the count for a longer run.

use berth_policy::fuzzing;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let end = (at + rng.below(8)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, t.bytes());
            }
            3 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = out[i].to_ascii_lowercase();
            }
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out
}

fn iterations() -> usize {
    std::env::var("BERTH_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

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
    for i in 0..iterations() {
        let seed = seeds[i % seeds.len()];
        let body = if i % 7 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            mutate(&mut rng, seed)
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
    for i in 0..iterations() {
        let line = mutate(&mut rng, seeds[i % seeds.len()].as_bytes());
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
    for i in 0..iterations() / 4 {
        let text = mutate(&mut rng, seeds[i % seeds.len()].as_bytes());
        fuzzing::policy_toml(&text);
    }
}
