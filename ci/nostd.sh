#!/usr/bin/env bash
# Builds the library for the three no_std targets with --no-default-features (no alloc, no std).
# thumbv6m and riscv32imc have no compare-and-swap: as an end user would, we give
# portable-atomic its critical-section fallback there (README: "Targets without CAS").
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf >/dev/null
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/nostd"
cargo build --lib --release --no-default-features --target thumbv7em-none-eabihf
for t in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
  cargo build --lib --release --no-default-features --features portable-atomic/critical-section --target "$t"
done
# The alloc layer without std (heap values and arenas on targets with an allocator).
cargo build --lib --release --no-default-features --features alloc --target thumbv7em-none-eabihf
# The core's unit tests on the host without `std`: the no_std waiter path, where the cancel
# path calls the waiter drain only through the pointer that the first `done()` registration
# installs (src/waiters.rs, "Critical sections"); the critical section comes from the
# dev-dependency's `std` implementation.
cargo test --lib --release --no-default-features --features alloc
# The crate is #![no_std] and declares `extern crate alloc` only with the alloc feature, so the
# --no-default-features builds above are the proof that the core uses neither alloc nor std.
echo "nostd.sh: thumbv6m-none-eabi, thumbv7em-none-eabihf, riscv32imc-unknown-none-elf (+alloc) build"
