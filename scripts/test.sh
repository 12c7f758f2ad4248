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
