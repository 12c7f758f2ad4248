#!/usr/bin/env bash
# berth's main job on a fresh machine: install what is missing, build, and serve the
# Docker API on /run/berth/docker.sock in front of berth's own managed engine.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -p berth
install -m 0755 target/release/berth /usr/local/bin/berth

cat <<'MSG'
berth: serving the Docker API on unix:///run/berth/docker.sock
  point docker at it:   export DOCKER_HOST=unix:///run/berth/docker.sock
  or make it default:   berth docker enable
MSG
exec /usr/local/bin/berth serve "$@"
