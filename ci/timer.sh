#!/usr/bin/env bash
# Measures the std global arena's timer (src/layers/timer.rs); not a CI gate, figures only.
#
# 1. RSS of 10^6 watched one-hour timeouts created and released (flat: the old Mutex<BTreeSet>
#    timer kept every entry until due, +35 MiB), and the firing latency of 10^4 deadlines spread
#    over 1 s with 10^5 more pending: percentiles of (time the timer thread ran the after_func
#    callback - deadline). Both are #[ignore]d tests in tests/timer.rs, run here in release mode.
#    Latency is scheduling-bound: on a loaded machine the timer thread waits for a core; run it
#    on a quiet one for the timer's own figures.
# 2. With `--bench`: the TimerChurn group (benches/go_parity.rs) beside WithTimeout.
#
# Usage: ci/timer.sh [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "timer.sh: load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a), $(nproc) cores"
cargo test --release --all-features --test timer -- --ignored --nocapture --test-threads 1 measure_
if [[ "${1:-}" == "--bench" ]]; then
    cargo bench --bench go_parity -- 'TimerChurn|WithTimeout/concurrency=4000$' --noplot
fi
