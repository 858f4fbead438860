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
# The defmt and embassy-time layers, as firmware builds them: libraries only (defmt's global
# logger and embassy's time driver are the final binary's to link). thumbv6m too: embassy-time
# runs on Cortex-M0 with the CAS fallback.
cargo build --lib --release --no-default-features --features defmt,embassy-time --target thumbv7em-none-eabihf
cargo build --lib --release --no-default-features --features defmt,embassy-time,portable-atomic/critical-section --target thumbv6m-none-eabi
# Both are optional: off, they are not in the dependency tree (normal and build edges: the tests'
# dev-dependency on embassy-time's mock driver is not the library's).
for feats in "--no-default-features" "--no-default-features --features alloc" ""; do
  # shellcheck disable=SC2086 # $feats is a list of arguments
  if cargo tree --locked -e normal,build $feats --target thumbv7em-none-eabihf | grep -E '(^|[^a-z])(defmt|embassy)'; then
    echo "nostd.sh: defmt/embassy in the dependency tree with '$feats'" >&2
    exit 1
  fi
done
# The docs of the core alone and of core + alloc, warnings denied: no intra-doc link may point at
# an item of a feature that is off (src/lib.rs links those to docs.rs instead).
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --no-deps --no-default-features
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --no-deps --no-default-features --features alloc
# And their examples run there too (on the host): an example that needs `std` (the global arena)
# or `alloc` says so and is ignored in the builds without it.
cargo test --doc --no-default-features
cargo test --doc --no-default-features --features alloc
# The tests and their lints without std (and without alloc): a test that needs the global arena
# or heap values says so with a `cfg` and is left out there, every other one runs.
for features in "" "--features alloc"; do
  # shellcheck disable=SC2086
  cargo clippy --no-default-features $features --all-targets -- -D warnings
  # shellcheck disable=SC2086
  cargo test --no-default-features $features --tests
done
echo "nostd.sh: thumbv6m-none-eabi, thumbv7em-none-eabihf, riscv32imc-unknown-none-elf (+alloc, +defmt/embassy-time) build; no_std docs link-clean and their examples pass"
