#!/usr/bin/env bash
# usage: measure.sh TARGET OPT [extra features...]  -> prints text+rodata of probe minus baseline
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-../target/firmware}
SIZE=$(find "$(rustc --print sysroot)"/lib/rustlib/*/bin -name llvm-size | head -1)
t=$1; opt=$2; shift 2
feats="$*"
tr() { $SIZE -A "$1" | awk '$1==".text"||$1==".rodata"{s+=$2} END{print s}'; }
CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build -q --release --bin probe --target $t --features "probe-baseline $feats" 
cp $CARGO_TARGET_DIR/$t/release/probe /tmp/probe-base
CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build -q --release --bin probe --target $t --features "$feats"
b=$(tr /tmp/probe-base); p=$(tr $CARGO_TARGET_DIR/$t/release/probe)
echo "$t opt=$opt [$feats]: $((p-b)) B (probe $p, baseline $b)"
