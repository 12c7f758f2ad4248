//! A bounded, stable-toolchain stand-in for the cargo-fuzz target `framing` (`fuzz/`):
//! mutated request streams through the same differential check against hyper's server,
//! and mutated response streams against hyper's client
//! (`berth_gateway::framing::fuzzing`), which panic where berth's framing and hyper
//! disagree. Deterministic (a fixed seed), so a failure reproduces;
//! `BERTH_FUZZ_ITERATIONS` raises the count for a longer run.

use berth_gateway::framing::fuzzing;
use berth_test::mutate::{iterations, Mutator, Rng};

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

#[test]
fn framing_reads_the_requests_hyper_reads() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for seed in SEEDS {
        fuzzing::requests(seed.as_bytes());
    }
    let mutator = Mutator {
        tokens: TOKENS,
        lower_case: false,
    };
    for i in 0..iterations(5_000) {
        let input = mutator.mutate(&mut rng, SEEDS[i % SEEDS.len()].as_bytes());
        fuzzing::requests(&input);
    }
}

const RESPONSES: &[&str] = &[
    "\0HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOK",
    "\0HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    "\0HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
    "\x01HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n",
    "\0HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n",
    "\0HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
    "\0HTTP/1.1 404 Not Found\ncontent-length: 3\ncontent-length: 3\n\nno\n",
];

const RESPONSE_TOKENS: &[&str] = &[
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
    " chunked",
    "HTTP/1.0",
    "HTTP/1.1 100 Continue\r\n\r\n",
    "101",
    "0\r\n\r\n",
    "ffffffffffffffff",
];

#[test]
fn framing_reads_the_responses_hyper_reads() {
    let mut rng = Rng(0xD6E8_FEB8_6659_FD93);
    let mutator = Mutator {
        tokens: RESPONSE_TOKENS,
        lower_case: false,
    };
    for seed in RESPONSES {
        fuzzing::responses(seed.as_bytes());
    }
    for i in 0..iterations(5_000) {
        let input = mutator.mutate(&mut rng, RESPONSES[i % RESPONSES.len()].as_bytes());
        fuzzing::responses(&input);
    }
}
