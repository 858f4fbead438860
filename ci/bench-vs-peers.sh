#!/usr/bin/env bash
# Issue 14's ratio table, from one run on this machine: Go's own context benchmarks
# (../shared/tools/go-bench), tokio-util 0.7 (benches/peers.rs), C++20's std::stop_token
# (benches/peers/stop_token.cpp) and ctxtree (benches/go_parity.rs, benches/release_order.rs),
# then a markdown table:
#
#   benchmark | Go | tokio-util | C++ | ctxtree | Go÷ctxtree | tokio-util÷ctxtree | C++÷ctxtree | target | met?
#
#   ci/bench-vs-peers.sh              # about 3 minutes on 2 vCPUs
#   WARM=1 MEAS=5 GO_TIME=1s ci/bench-vs-peers.sh   # longer samples (about 7 minutes)
#   STAT=min ci/bench-vs-peers.sh --table target/bench-vs-peers/<time>   # re-tabulate a run
#
# Figures are criterion medians (ctxtree, tokio-util), the median of 11 samples (C++) and Go's
# ns/op; STAT=min takes the fastest sample instead (steadier on a busy machine). The parallel benches (CommonParentCancel, WithTimeout/concurrency=400000) flip between
# modes on a 2-vCPU machine: every implementation runs them 3 times and the table shows the best,
# with the three runs beside it. Everything lands in target/bench-vs-peers/<time>/ (raw
# outputs, criterion's JSON, table-median.md or table-min.md). Needs g++ (C++20), python3, and
# Go's runner at ../shared/tools/go-bench (or GO_BENCH=path); it stops at once, naming what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench-vs-peers.sh: $*" >&2; exit 1; }

WARM=${WARM:-0.5}        # criterion --warm-up-time, seconds
MEAS=${MEAS:-2}          # criterion --measurement-time, seconds
GO_TIME=${GO_TIME:-200ms} # go test -benchtime
CPP_MS=${CPP_MS:-20}     # ms per C++ sample
# median (criterion's, and C++'s over its samples), or min: the fastest sample, which moves
# far less than the median while other work shares the cores (Go reports only its mean).
export STAT=${STAT:-median}
[[ $STAT == median || $STAT == min ]] || die "STAT must be median or min, not $STAT"

go_bench=${GO_BENCH:-../shared/tools/go-bench}
[[ -x $go_bench ]] || die "Go's benchmark runner is not at $go_bench (run from a checkout beside shared/, or set GO_BENCH=/path/to/go-bench)"
command -v g++ >/dev/null || die "g++ not found (the C++20 stop_token peer needs it)"
command -v python3 >/dev/null || die "python3 not found (it builds the table)"

log() { echo "== $* ($(date -u +%T))" >&2; }
# `logged FILE CMD...`: runs CMD, its output to FILE; on failure shows the tail and stops.
logged() {
  local f=$1
  shift
  "$@" >"$f" 2>&1 || { tail -n 20 "$f" >&2; die "failed: $* (log: $f)"; }
}
if [[ ${1:-} == --table ]]; then
  # Re-print the table of an earlier run (e.g. with STAT=min), running nothing.
  [[ -d ${2:-} ]] || die "usage: ci/bench-vs-peers.sh --table target/bench-vs-peers/<time>"
  out=$(cd "$2" && pwd)
else
  out=target/bench-vs-peers/$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  crit=(--warm-up-time "$WARM" --measurement-time "$MEAS" --noplot)

  # Sequential benchmarks: the rows of the table, by criterion ID (a regex each for ctxtree and
  # tokio-util). Go's `-bench` matches `Benchmark<Name>`, splits its pattern at `/` per
  # sub-benchmark level, and skips a benchmark without sub-benchmarks when given two levels.
  seq_ids='ErrOK|CheckCanceled/Done|CancelTree/depth=(1|1000)/Root=(Background|OpenCanceler)|DeepValueSameGoRoutine/depth=100|DeepValueMiss/depth=1000'
  par_ids='CommonParentCancel|WithTimeout/concurrency=400000'

  log "build"
  cargo bench --bench go_parity --bench peers --bench release_order --no-run 2>"$out/build.log" \
    || { tail -n 30 "$out/build.log" >&2; die "cargo bench --no-run failed (log: $out/build.log)"; }
  g++ -O2 -std=c++20 -o "$out/stop_token" benches/peers/stop_token.cpp 2>>"$out/build.log" \
    || { tail -n 30 "$out/build.log" >&2; die "g++ failed on benches/peers/stop_token.cpp"; }

  log "Go: sequential"
  "$go_bench" '^Benchmark(ErrOK|CheckCanceled|CancelTree|DeepValueSameGoRoutine)$' "$GO_TIME" >"$out/go-seq.txt" 2>&1 \
    || { tail -n 20 "$out/go-seq.txt" >&2; die "go-bench failed"; }
  grep -q '^Benchmark' "$out/go-seq.txt" || die "go-bench ran no benchmark (see $out/go-seq.txt)"
  log "C++ stop_token"
  logged "$out/cpp.txt" "$out/stop_token" "$CPP_MS"
  log "ctxtree: sequential"
  CRITERION_HOME=$out/criterion-seq logged "$out/ctxtree-seq.txt" \
    cargo bench -q --bench go_parity -- "${crit[@]}" "^($seq_ids)\$"
  log "tokio-util: sequential"
  CRITERION_HOME=$out/criterion-seq logged "$out/tokio-seq.txt" \
    cargo bench -q --bench peers -- "${crit[@]}" \
    "^tokio_util/(ErrOK|CheckCanceled/Done|CancelTree/depth=(1|1000)/Root=(Background|OpenCanceler))\$"
  log "ctxtree: ReleaseOrder at 100,000"
  CRITERION_HOME=$out/criterion-seq logged "$out/release-order.txt" \
    cargo bench -q --bench release_order -- "${crit[@]}" '^ReleaseOrder/(fifo|lifo)/100000$'
  for i in 1 2 3; do
    log "parallel, run $i of 3"
    { "$go_bench" '^BenchmarkCommonParentCancel$' "$GO_TIME" &&
      "$go_bench" '^BenchmarkWithTimeout$/^concurrency=400000$' "$GO_TIME"; } \
      >"$out/go-par-$i.txt" 2>&1 || { tail -n 20 "$out/go-par-$i.txt" >&2; die "go-bench failed"; }
    CRITERION_HOME=$out/criterion-par-$i logged "$out/ctxtree-par-$i.txt" \
      cargo bench -q --bench go_parity -- "${crit[@]}" "^($par_ids)\$"
    CRITERION_HOME=$out/criterion-par-$i logged "$out/tokio-par-$i.txt" \
      cargo bench -q --bench peers -- "${crit[@]}" '^tokio_util/CommonParentCancel$'
  done

fi

log "table"
table=$out/table-$STAT.md
python3 - "$out" >"$table" <<'PY'
import json, os, re, sys, platform, subprocess

out = sys.argv[1]
STAT = os.environ["STAT"]

def criterion(dirname):
    """full_id -> median ns, from criterion's JSON under `dirname`."""
    res = {}
    for root, _, files in os.walk(os.path.join(out, dirname)):
        if os.path.basename(root) == "new" and "estimates.json" in files:
            with open(os.path.join(root, "benchmark.json")) as f:
                fid = json.load(f)["full_id"]
            if STAT == "min":
                with open(os.path.join(root, "sample.json")) as f:
                    sm = json.load(f)
                res[fid] = min(t / i for t, i in zip(sm["times"], sm["iters"]))
            else:
                with open(os.path.join(root, "estimates.json")) as f:
                    res[fid] = json.load(f)["median"]["point_estimate"]
    return res

def go(name):
    """Go's `BenchmarkX/y-2  N  123.4 ns/op` lines -> {X/y: ns}."""
    res = {}
    with open(os.path.join(out, name)) as f:
        for line in f:
            m = re.match(r"^Benchmark(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op", line)
            if m:
                res[m.group(1)] = float(m.group(3))
    return res

def cpp():
    res = {}
    with open(os.path.join(out, "cpp.txt")) as f:
        for line in f:
            p = line.split()
            if len(p) == 4:
                res[p[0]] = float(p[2] if STAT == "min" else p[1])
    return res

seq = criterion("criterion-seq")
if not go("go-seq.txt"):
    sys.exit("bench-vs-peers.sh: no Go figures in go-seq.txt (pattern matched nothing?)")
par = [criterion(f"criterion-par-{i}") for i in (1, 2, 3)]
go_seq = go("go-seq.txt")
go_par = [go(f"go-par-{i}.txt") for i in (1, 2, 3)]
cc = cpp()

class V:
    """A figure: one value, or best-of-3 with its spread."""
    def __init__(self, vals):
        self.vals = [v for v in vals if v is not None]
    @property
    def best(self):
        return min(self.vals) if self.vals else None
    def show(self):
        if not self.vals:
            return "—"
        if len(self.vals) == 1:
            return fmt(self.vals[0])
        runs = ", ".join(fmt(v) for v in self.vals)
        return f"{fmt(min(self.vals))} (runs: {runs})"

def fmt(ns):
    if ns < 10:
        return f"{ns:.2f} ns"
    if ns < 1000:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns / 1e6:.2f} ms"

def ratio(a, b):
    return a.best / b.best if a.best is not None and b.best else None

def rshow(r):
    return "—" if r is None else f"{r:.1f}×"

# (row, Go, tokio-util, C++, ctxtree, target text, check(go÷, tokio÷, c++÷, ctxtree ns))
def one(d, k):
    return V([d.get(k)])

def three(ds, k):
    return V([d.get(k) for d in ds])

rows = []
def row(name, g, t, c, x, target, ok):
    rg, rt, rc = ratio(g, x), ratio(t, x), ratio(c, x)
    try:
        met = ok(rg, rt, rc, x.best)
        met = "yes" if met else "**no**"
    except TypeError:
        met = "?"
    rows.append([name, g.show(), t.show(), c.show(), x.show(), rshow(rg), rshow(rt), rshow(rc), target, met])

for k in ["ErrOK", "CheckCanceled/Done"]:
    row(k, one(go_seq, k), one(seq, "tokio_util/" + k), one(cc, "stop_token/" + k), one(seq, k),
        "≤ 0.5 ns", lambda g, t, c, x: x <= 0.5)
for d in (1, 1000):
    k = f"CancelTree/depth={d}/Root=Background"
    row(k, one(go_seq, k), one(seq, "tokio_util/" + k), one(cc, "stop_token/" + k), one(seq, k),
        "≥ 3× Go, ≥ 2× C++", lambda g, t, c, x: g >= 3 and c >= 2)
    k = f"CancelTree/depth={d}/Root=OpenCanceler"
    row(k, one(go_seq, k), one(seq, "tokio_util/" + k), one(cc, "stop_token/" + k), one(seq, k),
        "≥ 15× Go, ≥ 3× tokio-util, ≥ 2× C++", lambda g, t, c, x: g >= 15 and t >= 3 and c >= 2)
k = "DeepValueSameGoRoutine/depth=100"
row(k, one(go_seq, k), V([]), V([]), one(seq, k), "≥ 4× Go", lambda g, t, c, x: g >= 4)
k = "DeepValueMiss/depth=1000"
row(k, V([]), V([]), V([]), one(seq, k), "≤ 10 ns", lambda g, t, c, x: x <= 10)
k = "CommonParentCancel"
row(k + " (best of 3)", three(go_par, k), three(par, "tokio_util/" + k), V([]), three(par, k),
    "≥ 2× Go", lambda g, t, c, x: g >= 2)
k = "WithTimeout/concurrency=400000"
row(k + " (best of 3)", three(go_par, k), V([]), V([]), three(par, k),
    "≥ 3× Go", lambda g, t, c, x: g >= 3)
fifo, lifo = seq.get("ReleaseOrder/fifo/100000"), seq.get("ReleaseOrder/lifo/100000")
fl = fifo / lifo if fifo and lifo else None
rows.append(["ReleaseOrder/100000: fifo ÷ lifo", "—", "—", "—",
             "—" if fl is None else f"{fl:.2f} ({fmt(fifo)} / {fmt(lifo)} per 100,000)",
             "—", "—", "—", "≤ 2", "?" if fl is None else ("yes" if fl <= 2 else "**no**")])

cpu = "?"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
gover = next((l.strip() for l in open(os.path.join(out, "go-seq.txt")) if l.startswith("go version")), "go ?")
print(f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
      f"{gover}; {subprocess.run(['rustc', '--version'], capture_output=True, text=True).stdout.strip()}; "
      f"{subprocess.run(['g++', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
print(f"Run: {os.path.basename(out)}, `ci/bench-vs-peers.sh` (raw outputs in {out}); "
      f"Rust and C++ figures: {'fastest sample' if STAT == 'min' else 'median'}, Go: ns/op")
fa, ce = cc.get("cpu/fetch_add"), cc.get("cpu/compare_exchange")
if fa and ce:
    print(f"One uncontended atomic RMW here: fetch_add {fmt(fa)}, load + compare_exchange {fmt(ce)}")
print()
head = ["benchmark", "Go", "tokio-util", "C++", "ctxtree", "Go÷ctxtree", "tokio-util÷ctxtree",
        "C++÷ctxtree", "target", "met?"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
cat "$table"
