# Shared by the scripts in this folder: paths and the cargo target dir.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT

# Keep build output outside the clone so that repeated CI runs on one machine (each in a
# fresh clone) reuse the compiled dependency tree. A fresh machine simply builds it once.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${BUILDSRS_TARGET_DIR:-/var/tmp/buildsrs-target}"
fi
mkdir -p "$CARGO_TARGET_DIR"
# No incremental compilation: test, bench and devnet builds are built once per change, and
# incremental state once grew the shared target dir by gigabytes.
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*"; }
