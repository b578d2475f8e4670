"""Memorization at scale: twoclocks' exact membership + nearest-neighbour Hamming vs faiss.

Same data for both: a train set of N random binary rows (D bits) and Q queries. twoclocks:
``probes.memo.TrainIndex`` (pack into uint64 words, sort + searchsorted for membership, cache-blocked
XOR + popcount for the nearest neighbour); baseline: faiss ``IndexBinaryFlat`` (exact binary k-NN,
k = 1) on the same rows packed into bytes and padded to a multiple of 64 bits, faiss's fastest layout
(at 40 bits it is ~2x slower). Both searches are exhaustive. Reported: seconds (best of --repeat) and
the ratio faiss / twoclocks (> 1: twoclocks faster). Also a "late checkpoint" case, where half of the
queries are train samples and many repeat: twoclocks skips those, faiss cannot. Last, the whole
per-step scoring of the samples probe (``SampleEvaluator.evaluate``: decode, q, validity, states,
memorization, group memorization, nearest-neighbour Hamming, summaries) on 6x6 parity, G=3.

    pip install faiss-cpu          # for the baseline only; not a twoclocks dependency
    python benchmarks/bench_memo.py
    python benchmarks/bench_memo.py --n 100000 --q 2048 --d 36 --threads 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from twoclocks.probes.memo import TrainIndex


def best(fn, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t.append(time.perf_counter() - t0)
    return min(t), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--q", type=int, default=2048)
    ap.add_argument("--d", type=int, nargs="+", default=[36, 216])
    ap.add_argument("--threads", type=int, default=2, help="faiss OpenMP threads")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    try:
        import faiss
        faiss.omp_set_num_threads(a.threads)
    except ImportError:
        faiss = None
        print("faiss is not installed (pip install faiss-cpu): timing twoclocks only")
    rng = np.random.default_rng(0)
    print(f"{'N':>7} {'D':>4} {'case':>6} {'index':>7} {'twoclocks':>10} {'faiss':>8} {'faiss/ours':>10}  exact")
    for d in a.d:
        for n in a.n:
            train = rng.integers(0, 2, (n, d), dtype=np.uint8)
            rand = rng.integers(0, 2, (a.q, d), dtype=np.uint8)
            late = rand.copy()
            late[: a.q // 2] = train[rng.integers(0, n, a.q // 2)]           # half memorized, with repeats
            t_index, idx = best(lambda: TrainIndex(train), a.repeat)
            if faiss is not None:
                w = -(-d // 64) * 64

                def padbytes(b):
                    p = np.zeros((len(b), w), np.uint8)
                    p[:, :d] = b
                    return np.packbits(p, axis=1)
                fidx = faiss.IndexBinaryFlat(w)
                fidx.add(padbytes(train))
            for case, q in (("random", rand), ("late", late)):
                t_ours, dist = best(lambda: (idx.contains(q), idx.nn_hamming(q)), a.repeat)
                if faiss is None:
                    print(f"{n:>7} {d:>4} {case:>6} {t_index:>7.3f} {t_ours:>10.3f}")
                    continue
                qb = padbytes(q)
                t_f, (fd, _) = best(lambda: fidx.search(qb, 1), a.repeat)
                ok = np.array_equal(fd[:, 0], dist[1]) and np.array_equal(dist[0], fd[:, 0] == 0)
                print(f"{n:>7} {d:>4} {case:>6} {t_index:>7.3f} {t_ours:>10.3f} {t_f:>8.3f} "
                      f"{t_f / t_ours:>10.2f}  {ok}")
    from twoclocks.data import BinaryEncoding, GroupParity
    from twoclocks.probes.samples import SampleEvaluator
    rule, enc = GroupParity(6, 6, group=3), BinaryEncoding()
    for n in a.n:
        train = rule.sample(n, rng)
        t_build, ev = best(lambda: SampleEvaluator(rule, enc, train), 1)
        x = enc.encode(np.concatenate([rule.sample(a.q // 2, rng), train[: a.q - a.q // 2]]))
        x += rng.normal(0, 0.02, x.shape).astype(np.float32)
        t_eval, _ = best(lambda: ev.evaluate(x), a.repeat)
        print(f"samples probe scoring, 6x6 parity G=3, N = {n}, {a.q} samples: {t_eval:.3f} s per step "
              f"(index built once per run: {t_build:.3f} s)")


if __name__ == "__main__":
    main()
