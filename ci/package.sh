#!/usr/bin/env bash
# Publish readiness:
#   1. the published file list holds only the library, README, LICENSE, CHANGELOG and the
#      manifest (Cargo.toml's `include`): no tests/, benches/, examples/, loom-tests/, ci/;
#   2. `cargo publish --dry-run`: packages the crate and builds the packaged copy on its own
#      (cargo drops the test/bench/example targets whose files are not shipped, with a warning
#      each); no upload;
#   3. the docs.rs build: nightly rustdoc with `--cfg docsrs` and all features (the
#      `[package.metadata.docs.rs]` settings), warnings denied, in target/docsrs.
#
# Wall time, measured on the 2-core machine: 6 s with empty target/package and target/docsrs
# (the packaged build and the docs reuse nothing else); add the nightly install (~15-60 s, the
# same toolchain ci/miri.sh installs later) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

list=$(cargo package --list --allow-dirty --locked)
echo "$list" | sed 's/^/package.sh: ships /'
if bad=$(echo "$list" | grep -E '^(tests|benches|examples|loom-tests|ci|\.ci|target)/'); then
  echo "package.sh: files that must not be published:" >&2
  echo "$bad" >&2
  exit 1
fi

cargo publish --dry-run --allow-dirty --locked

rustup toolchain install nightly --profile minimal
RUSTDOCFLAGS="--cfg docsrs -D warnings" CARGO_TARGET_DIR="$PWD/target/docsrs" \
  cargo +nightly doc --locked --all-features --no-deps
echo "package.sh: passed in $((SECONDS - start))s"
