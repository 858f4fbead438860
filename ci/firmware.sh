#!/usr/bin/env bash
# A real firmware in CI (issue 11): builds firmware/ (its own workspace, its own target dir
# firmware/target), checks the flash budget of the core API with llvm-size, checks that the
# arenas are in .bss with llvm-nm, and runs the stress firmware under QEMU on a Cortex-M3
# (lm3s6965evb, thumbv7m) and a Cortex-M0 (microbit, thumbv6m: no compare-and-swap, and no
# critical-section implementation linked either).
#
# Flash budget (the size probe, firmware/src/bin/probe.rs, minus the same binary without
# ctxtree; .text + .rodata, LTO, codegen-units = 1), on thumbv7em-none-eabihf at opt-level "s":
#   core API, halting panic handler   <= FLASH_BUDGET (bytes)
#   with panic-semihosting             <= that + 512 (no panic path reachable: measured + 0)
#   with Display and dump              <= that + FMT_EXTRA
# The budgets sit a few percent above the figures measured (5,044 B and +2,488 B now, in the
# compact build that build.rs selects for bare-metal targets; 6,772 B and +8,448 B when this
# gate was written), so that flash only shrinks. Issue 11's targets, 4,096 B (not met yet) and
# +3,072 B (met), are printed beside them. The other targets and
# opt-level "z" are printed, not gated.
#
# QEMU comes from Debian's qemu-system-arm: `apt-get install` when that works, else the debs
# are downloaded and unpacked with dpkg -x into target/qemu (idempotent: reused when present).
#
# Wall time on the 2-core machine: about 2 minutes from a cold firmware/target, 40 s warm.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
FLASH_BUDGET=${FLASH_BUDGET:-5248}
SEMIHOSTING_EXTRA=512
FMT_EXTRA=${FMT_EXTRA:-2592}
TARGET_CORE=4096
TARGET_FMT=3072

rustup target add thumbv7m-none-eabi thumbv6m-none-eabi thumbv7em-none-eabihf >/dev/null
rustup component add llvm-tools >/dev/null 2>&1 || rustup component add llvm-tools-preview >/dev/null
bin=$(dirname "$(find "$(rustc --print sysroot)"/lib/rustlib/*/bin -name llvm-size | head -1)")
[ -x "$bin/llvm-size" ] || { echo "firmware.sh: llvm-size not found in the rustup sysroot" >&2; exit 1; }
size_of() { "$bin/llvm-size" -A "$1" | awk '$1==".text"||$1==".rodata"{s+=$2} END{print s+0}'; }

# --- QEMU -----------------------------------------------------------------------------------
qemu=$(command -v qemu-system-arm || true)
local_qemu="$root/target/qemu/root/usr/bin/qemu-system-arm"
if [ -z "$qemu" ] && [ -x "$local_qemu" ]; then
  qemu=$local_qemu
fi
if [ -z "$qemu" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-arm) >/dev/null 2>&1 || true
  qemu=$(command -v qemu-system-arm || true)
fi
if [ -z "$qemu" ]; then
  # No root, or a dependency conflict: unpack the debs (and their libraries) locally.
  # qemu-system-arm, qemu-system-common, qemu-system-data and every library they depend on
  # (recursively) that is not installed already.
  mkdir -p "$root/target/qemu/debs" "$root/target/qemu/root"
  pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
           --no-replaces --no-enhances qemu-system-arm | grep -E '^[a-z0-9]' | sort -u |
         while read -r p; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  (cd "$root/target/qemu/debs" && apt-get download $pkgs >/dev/null)
  for d in "$root"/target/qemu/debs/*.deb; do dpkg -x "$d" "$root/target/qemu/root"; done
  qemu=$local_qemu
  export LD_LIBRARY_PATH="$root/target/qemu/root/usr/lib/x86_64-linux-gnu:$root/target/qemu/root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
"$qemu" --version | head -1

# --- flash ----------------------------------------------------------------------------------
cd firmware
export CARGO_TARGET_DIR="$root/firmware/target"
declare -A figure
probe() { # target opt features... -> text+rodata of the probe
  local t=$1 opt=$2; shift 2
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt cargo build -q --locked --release --bin probe --target "$t" --features "$*" >&2
  size_of "$CARGO_TARGET_DIR/$t/release/probe"
}
printf '%-22s %-4s %8s %8s %8s %10s\n' target opt core +semih +fmt "arena .bss"
for t in thumbv7em-none-eabihf thumbv6m-none-eabi; do
  for opt in s z; do
    base=$(probe "$t" "$opt" probe-baseline)
    base_sh=$(probe "$t" "$opt" probe-baseline probe-semihosting)
    core=$(( $(probe "$t" "$opt" "") - base ))
    bss=$("$bin/llvm-nm" -C "$CARGO_TARGET_DIR/$t/release/probe" | awk '/probe::api::ARENA/{print $2}')
    sh=$(( $(probe "$t" "$opt" probe-semihosting) - base_sh ))
    fmt=$(( $(probe "$t" "$opt" probe-fmt) - base ))
    figure[$t.$opt]="$core $sh $fmt"
    printf '%-22s %-4s %8d %8d %8d %10s\n' "$t" "$opt" "$core" "$((sh - core))" "$((fmt - core))" "$bss"
    if [ "$bss" != b ] && [ "$bss" != B ]; then
      echo "firmware.sh: the probe's arena is not in .bss (nm type '$bss')" >&2; exit 1
    fi
  done
done
read -r core sh fmt <<<"${figure[thumbv7em-none-eabihf.s]}"
fail=0
[ "$core" -le "$FLASH_BUDGET" ] || { echo "firmware.sh: core API $core B > $FLASH_BUDGET B" >&2; fail=1; }
[ "$sh" -le $((core + SEMIHOSTING_EXTRA)) ] || { echo "firmware.sh: panic-semihosting adds $((sh - core)) B > $SEMIHOSTING_EXTRA B" >&2; fail=1; }
[ "$fmt" -le $((core + FMT_EXTRA)) ] || { echo "firmware.sh: Display and dump add $((fmt - core)) B > $FMT_EXTRA B" >&2; fail=1; }
[ "$fail" = 0 ] || exit 1
echo "firmware.sh: flash budget held (thumbv7em, opt-level s): core $core B <= $FLASH_BUDGET B, semihosting +$((sh - core)) B <= +$SEMIHOSTING_EXTRA B, Display+dump +$((fmt - core)) B <= +$FMT_EXTRA B"
echo "firmware.sh: issue 11's targets: core <= $TARGET_CORE B ($([ "$core" -le $TARGET_CORE ] && echo met || echo "not met: $((core - TARGET_CORE)) B over")), Display+dump <= +$TARGET_FMT B ($([ $((fmt - core)) -le $TARGET_FMT ] && echo met || echo "not met: $((fmt - core - TARGET_FMT)) B over"))"

# --- the stress firmware under QEMU ---------------------------------------------------------
run() { # target features machine
  local t=$1 feats=$2 machine=$3 elf out kind
  cargo build -q --locked --release --bin stress --target "$t" --features "$feats"
  elf="$CARGO_TARGET_DIR/$t/release/stress"
  read -r kind < <("$bin/llvm-nm" -C "$elf" | awk '/ stress::ARENA/{print $2}')
  echo "firmware.sh: $t: flash $(size_of "$elf") B (.text+.rodata), ARENA in nm section '$kind'; $("$bin/llvm-size" -A "$elf" | awk '$1==".data"||$1==".bss"{printf "%s %d B  ", $1, $2}')"
  if [ "$kind" != b ] && [ "$kind" != B ]; then
    echo "firmware.sh: $t: the arena is not in .bss" >&2; exit 1
  fi
  if "$bin/llvm-nm" "$elf" | grep -q _critical_section_1_0_acquire; then
    echo "firmware.sh: $t: a critical-section implementation got linked" >&2; exit 1
  fi
  out=$(timeout 120 "$qemu" -machine "$machine" -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -kernel "$elf" 2>&1) || {
    echo "$out"; echo "firmware.sh: $t on $machine failed" >&2; exit 1; }
  echo "$out" | grep '^firmware:'
  echo "$out" | grep -q '^firmware: OK' || { echo "firmware.sh: no OK line" >&2; exit 1; }
}
run thumbv7m-none-eabi "" lm3s6965evb
run thumbv6m-none-eabi microbit microbit
echo "firmware.sh: passed in $((SECONDS - start))s"
