#!/usr/bin/env bash
# Checks the library on the MSRV, the `rust-version` of Cargo.toml (read from there, so the two
# cannot drift): the no_std core (`--no-default-features`) and every layer (`--all-features`),
# with the committed lockfile (`--locked`), in its own target dir (target/msrv). Only the
# library: the dev-dependencies (criterion, tokio, loom) and the tests may need a newer Rust.
#
# Why 1.87: heapless 0.9.3 (Cargo.lock) declares it; ctxtree's own code checks on 1.86, and 1.85
# cannot compile any heapless 0.9 (`FromBytesWithNulError`'s variants are 1.86 API).
#
# Rust 1.87 warns about three items it thinks unused (MIN_TAG_BITS, layout's `end`, `packs`: used
# only in const assertions, which newer lints see); warnings do not fail this gate.
#
# Wall time, measured on the 2-core machine: 21 s cold (toolchain install ~15 s, no target dir),
# 7 s with the toolchain installed and an empty target/msrv.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[[ -n "$msrv" ]] || { echo "msrv.sh: no rust-version in Cargo.toml" >&2; exit 1; }
rustup toolchain install "$msrv" --profile minimal
export CARGO_TARGET_DIR="${CARGO_MSRV_TARGET_DIR:-$PWD/target/msrv}"
echo "msrv.sh: Rust $msrv, target dir $CARGO_TARGET_DIR"
cargo "+$msrv" check --locked --lib --no-default-features
cargo "+$msrv" check --locked --lib --all-features
echo "msrv.sh: passed on Rust $msrv in $((SECONDS - start))s"
