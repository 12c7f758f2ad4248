//! A bounded, stable-toolchain stand-in for the cargo-fuzz target `framing` (`fuzz/`):
//! mutated request streams through the same differential check against hyper's server
//! (`berth_gateway::framing::fuzzing`), which panics where berth's framing and hyper
//! disagree. Deterministic (a fixed seed), so a failure reproduces;
//! `BERTH_FUZZ_ITERATIONS` raises the count for a longer run.

use berth_gateway::framing::fuzzing;

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
    "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\nGET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n",
    "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"Image\":\"bb\"}\r\n\nGET / HTTP/1.1\r\n\r\n",
    "PUT /containers/a/archive?path=/ HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n",
    "POST /build HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    "POST /a HTTP/1.1\nContent-Length: 2\ncontent-length: 2\n\nokGET /b HTTP/1.1\r\nConnection: close\r\n\r\n",
];

/// Tokens that steer mutations toward what framing reads.
const TOKENS: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    ":",
    ";",
    ",",
    "0",
    "f",
    "Content-Length: ",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: ",
    "Connection: close\r\n",
    "Expect: 100-continue\r\n",
    "Upgrade: tcp\r\n",
    " chunked",
    "HTTP/1.0",
    "0\r\n\r\n",
    "ffffffffffffffff",
    "GET / HTTP/1.1\r\n\r\n",
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
            2 | 3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, t.bytes());
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
        .unwrap_or(5_000)
}

#[test]
fn framing_reads_the_requests_hyper_reads() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for seed in SEEDS {
        fuzzing::requests(seed.as_bytes());
    }
    for i in 0..iterations() {
        let input = mutate(&mut rng, SEEDS[i % SEEDS.len()].as_bytes());
        fuzzing::requests(&input);
    }
}
