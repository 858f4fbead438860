//! `ReleaseOrder`: releasing the children of one cancellable parent in three orders — newest
//! first (`lifo`), oldest first (`fifo`, the commonest server shape: requests finish roughly in
//! arrival order) and shuffled (`random`) — with 1,000 and 100,000 live siblings.
//!
//! Each iteration creates `n` children (`with_cancel`) under a cancellable parent on a
//! `HeapArena` sized for them, then times only their release (dropping each child's context and
//! canceler, which cancels it, unlinks it from the parent's list and frees its node), and
//! reports the time per release (criterion's throughput: elements = releases). Go keeps a
//! parent's children in a map and tokio-util in a `Vec` with `swap_remove`, both O(1); a singly
//! linked list searched from its head is O(live siblings) per oldest-first release (ctxtree 0.1:
//! 10,000 children released oldest-first took 1.18 s, newest-first 0.54 ms). Target (issue
//! "Core v2"): `fifo` within 2x of `lifo` at 100,000.
//!
//! `cargo bench --bench release_order` (or `-- --output-format bencher`).

use ctxtree::Child;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ctxtree::{Canceler, Context, HeapArena};

/// A reproducible shuffle (xorshift + Fisher-Yates), the same for every run.
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn release_order(c: &mut Criterion) {
    let mut g = c.benchmark_group("ReleaseOrder");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for n in [1_000usize, 100_000] {
        let arena = HeapArena::with_capacity(n + 2);
        let orders: [(&str, Vec<usize>); 3] = [
            ("fifo", (0..n).collect()),
            ("lifo", (0..n).rev().collect()),
            ("random", shuffled(n)),
        ];
        g.throughput(Throughput::Elements(n as u64));
        for (name, order) in &orders {
            g.bench_with_input(BenchmarkId::new(*name, n), order, |b, order| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let Child {
                            ctx: parent,
                            cancel,
                        } = arena.background().with_cancel().expect("arena");
                        let mut kids: Vec<Option<(Context<'_>, Canceler<'_>)>> = (0..n)
                            .map(|_| Some(parent.with_cancel().expect("arena").into_parts()))
                            .collect();
                        let start = Instant::now();
                        for &i in order {
                            black_box(kids[i].take());
                        }
                        total += start.elapsed();
                        drop((parent, cancel));
                    }
                    total
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, release_order);
criterion_main!(benches);
