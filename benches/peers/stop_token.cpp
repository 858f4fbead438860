// The C++20 peer of ctxtree's Go-parity benches (issue 14): libstdc++'s std::stop_token /
// std::stop_source / std::stop_callback on the shapes of Go's context benchmarks.
//
//   g++ -O2 -std=c++20 -o target/stop_token benches/peers/stop_token.cpp
//   target/stop_token [MS_PER_SAMPLE]
//
// (ci/bench-vs-peers.sh builds and runs it.) Each line of output is
//
//   stop_token/<Go benchmark name> <median ns/op> <min ns/op> <max ns/op>
//
// over SAMPLES samples of about MS_PER_SAMPLE milliseconds each (default 20), and two lines
// `cpu/fetch_add`, `cpu/compare_exchange`: the cost of one uncontended atomic read-modify-write.
//
// The translation, one for one with benches/go_parity.rs:
// * `WithCancel(parent)` is a new std::stop_source plus a std::stop_callback on the parent's
//   token that calls the child's request_stop() (the only way C++ links sources; it is what
//   std::jthread users write). `WithCancel(Background())` is a source with no callback.
// * `cancel()` is request_stop(); releasing a node destroys its callback (deregistering it from
//   the parent), then its source (dropping the shared state's last reference: a heap free).
// * `Err() != nil` / `select { case <-Done(): }` are token.stop_requested().
// * CancelTree: build a chain of `depth` linked sources, cancel the root (Root=OpenCanceler),
//   destroy innermost first: create + cancel + destroy per iteration, as ctxtree's bench does
//   (its dropped Canceler cancels and releases). Root=Background releases without a
//   request_stop (as Go leaves the chain to its collector); Root=ClosedCanceler builds under a
//   root already stopped (each callback runs at registration).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

namespace {

constexpr int SAMPLES = 11;
double g_ms_per_sample = 20.0;

// Keeps `v` alive and opaque to the optimiser (Google Benchmark's DoNotOptimize).
template <class T>
inline void keep(T const& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

// Launders a pointer so that each iteration reloads through it (criterion's black_box(&ctx)).
template <class T>
inline T* opaque(T* p) {
  asm volatile("" : "+r"(p));
  return p;
}

struct Stats {
  double median, min, max;
};

// Runs `body(n)` (n iterations) in samples of about g_ms_per_sample ms; ns per iteration.
template <class F>
Stats measure(F body) {
  using clock = std::chrono::steady_clock;
  // Calibrate: double n until one run takes >= 1/10 of a sample.
  long n = 1;
  for (;;) {
    auto t0 = clock::now();
    body(n);
    double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    if (ms >= g_ms_per_sample / 10 || n >= (1L << 40)) {
      double per = ms / n;
      n = std::max(1L, static_cast<long>(g_ms_per_sample / std::max(per, 1e-9)));
      break;
    }
    n *= 2;
  }
  std::vector<double> ns;
  for (int s = 0; s < SAMPLES; ++s) {
    auto t0 = clock::now();
    body(n);
    ns.push_back(std::chrono::duration<double, std::nano>(clock::now() - t0).count() / n);
  }
  std::sort(ns.begin(), ns.end());
  return {ns[ns.size() / 2], ns.front(), ns.back()};
}

void print(std::string const& name, Stats s, const char* prefix = "stop_token") {
  std::printf("%s/%s %.4f %.4f %.4f\n", prefix, name.c_str(), s.median, s.min, s.max);
  std::fflush(stdout);
}

// request_stop() on the source it points to: the link from a parent's token to a child.
struct Forward {
  std::stop_source* child;
  void operator()() const noexcept { child->request_stop(); }
};
using Link = std::stop_callback<Forward>;

// One level of a chain: a source and the callback that links it under its parent.
struct Level {
  std::optional<std::stop_source> src;
  std::optional<Link> link;
};

// Go's buildContextTree on `levels[0..depth)`, under `root` (nullptr: Background).
inline void build(Level* levels, int depth, std::stop_source* root) {
  std::stop_source* parent = root;
  for (int d = 0; d < depth; ++d) {
    Level& l = levels[d];
    l.src.emplace();
    if (parent != nullptr) l.link.emplace(parent->get_token(), Forward{&*l.src});
    parent = &*l.src;
  }
}

// Destroys the chain innermost first: callback (deregistration), then source.
inline void release(Level* levels, int depth) {
  for (int d = depth - 1; d >= 0; --d) {
    levels[d].link.reset();
    levels[d].src.reset();
  }
}

void checks() {
  std::stop_source live;
  std::stop_token live_tok = live.get_token();
  print("ErrOK", measure([&](long n) {
          for (long i = 0; i < n; ++i) {
            if (opaque(&live_tok)->stop_requested()) std::abort();
          }
        }));
  std::stop_source stopped;
  stopped.request_stop();
  std::stop_token stopped_tok = stopped.get_token();
  print("ErrCanceled", measure([&](long n) {
          for (long i = 0; i < n; ++i) {
            if (!opaque(&stopped_tok)->stop_requested()) std::abort();
          }
        }));
  // Go's CheckCanceled/Err and /Done are the same call here.
  for (const char* name : {"CheckCanceled/Err", "CheckCanceled/Done"}) {
    print(name, measure([&](long n) {
            for (long i = 0; i < n; ++i) {
              bool b = opaque(&stopped_tok)->stop_requested();
              keep(b);
            }
          }));
  }
}

void cancel_tree() {
  constexpr int MAX_DEPTH = 1000;
  std::unique_ptr<Level[]> levels(new Level[MAX_DEPTH]);
  for (int depth : {1, 10, 100, 1000}) {
    std::string d = "CancelTree/depth=" + std::to_string(depth);
    print(d + "/Root=Background", measure([&](long n) {
            for (long i = 0; i < n; ++i) {
              build(levels.get(), depth, nullptr);
              release(levels.get(), depth);
            }
          }));
    print(d + "/Root=OpenCanceler", measure([&](long n) {
            for (long i = 0; i < n; ++i) {
              std::stop_source root;
              build(levels.get(), depth, &root);
              root.request_stop();
              if (!levels[depth - 1].src->stop_requested()) std::abort();
              release(levels.get(), depth);
            }
          }));
    print(d + "/Root=ClosedCanceler", measure([&](long n) {
            for (long i = 0; i < n; ++i) {
              std::stop_source root;
              root.request_stop();
              build(levels.get(), depth, &root);
              if (!levels[depth - 1].src->stop_requested()) std::abort();
              release(levels.get(), depth);
            }
          }));
  }
}

// What one uncontended atomic read-modify-write costs on this machine (`lock xadd`, `lock
// cmpxchg` on x86-64): the unit of ctxtree's tree operations (tests/rmw_count.rs counts them).
// Back to back on one line, each waits for the previous (a locked instruction drains the store
// buffer), so this is their latency, as in a chain of dependent tree steps.
void rmw_cost() {
  alignas(64) static std::atomic<std::uint32_t> word{0};
  print("fetch_add", measure([&](long n) {
          for (long i = 0; i < n; ++i) opaque(&word)->fetch_add(1, std::memory_order_relaxed);
        }),
        "cpu");
  print("compare_exchange", measure([&](long n) {
          for (long i = 0; i < n; ++i) {
            std::uint32_t v = opaque(&word)->load(std::memory_order_relaxed);
            opaque(&word)->compare_exchange_strong(v, v + 1, std::memory_order_acq_rel);
          }
        }),
        "cpu");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    g_ms_per_sample = std::atof(argv[1]);
    if (!(g_ms_per_sample > 0)) {
      std::fprintf(stderr, "usage: %s [MS_PER_SAMPLE > 0]\n", argv[0]);
      return 2;
    }
  }
  rmw_cost();
  checks();
  cancel_tree();
  return 0;
}
