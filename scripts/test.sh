#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints, unit and end-to-end tests against
# real dockerd engines that the tests start themselves (needs root: network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links" cargo doc --workspace --no-deps --locked --quiet
echo "== cargo test"
# One process per test binary: engines (real dockerd) are shared by the tests of a binary.
cargo test --workspace --locked -- --test-threads "${BERTH_TEST_THREADS:-4}"
echo "== fuzz (bounded)"
# berth-policy's and berth-gateway's cargo-fuzz targets on the stable toolchain:
# `--sanitizer none` keeps libFuzzer's coverage guidance without nightly-only sanitizers.
# BERTH_FUZZ_SECONDS per target (default 20; 0 skips). cargo-fuzz is installed when
# missing; if that fails, the stable stand-ins (crates/*/tests/fuzz_stable.rs) already ran
# with `cargo test`.
fuzz_seconds=${BERTH_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  # libFuzzer is C++: cargo-fuzz builds it with the system's g++.
  command -v g++ >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null || true
  cargo install cargo-fuzz --locked --quiet || echo "cargo-fuzz could not be installed"
fi
if [ "$fuzz_seconds" != 0 ] && cargo fuzz --version >/dev/null 2>&1; then
  for crate_target in berth-policy/create_body berth-policy/request_path \
      berth-policy/policy_toml berth-gateway/framing; do
    crate=${crate_target%/*}
    target=${crate_target#*/}
    log=$(mktemp)
    if ! (cd "crates/$crate" && cargo fuzz run --sanitizer none -O "$target" -- \
        -max_total_time="$fuzz_seconds") >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "fuzz target $target failed (artifacts in crates/$crate/fuzz/artifacts/$target)"
      exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$log" | sed "s/^/$target: /" || true
    rm -f "$log"
  done
else
  echo "cargo-fuzz not installed (or BERTH_FUZZ_SECONDS=0): skipped"
fi
