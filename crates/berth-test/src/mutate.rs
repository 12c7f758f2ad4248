//! The mutation loop of the stable-toolchain stand-ins for the cargo-fuzz targets
//! (`crates/*/tests/fuzz_stable.rs`): deterministic (a fixed seed per test), so a
//! failure reproduces; `BERTH_FUZZ_ITERATIONS` raises the count for a longer run.

/// xorshift64*: small, deterministic, good enough to pick mutations.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// How an input is mutated: one to five edits, each a flipped bit, a short range
/// removed, a token inserted, a random byte inserted, or (the fourth kind) another
/// token inserted or, with `lower_case`, a byte lower-cased (for inputs whose parser
/// matches names case-insensitively).
#[derive(Debug)]
pub struct Mutator<'a> {
    /// Tokens that steer mutations toward what the parser under test reads.
    pub tokens: &'a [&'a str],
    pub lower_case: bool,
}

impl Mutator<'_> {
    pub fn mutate(&self, rng: &mut Rng, input: &[u8]) -> Vec<u8> {
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
                3 if self.lower_case => match out.len() {
                    0 => out.insert(at, rng.next_u64() as u8),
                    len => {
                        let i = rng.below(len);
                        out[i] = out[i].to_ascii_lowercase();
                    }
                },
                2 | 3 => {
                    let t = self.tokens[rng.below(self.tokens.len())];
                    out.splice(at..at, t.bytes());
                }
                _ => out.insert(at, rng.next_u64() as u8),
            }
        }
        out
    }
}

/// `BERTH_FUZZ_ITERATIONS`, else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("BERTH_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
