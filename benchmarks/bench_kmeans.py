"""Benchmark dctutor's k-means against faiss and scikit-learn; prints a markdown table.

    python benchmarks/bench_kmeans.py --n 50000 --d 256 --ks 100 1000 --iters 20 --threads 2

(with dctutor installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.``). All implementations
cluster the same preprocessed data from the same initial centroids, in one process, taking turns.
Each runs at most --iters Lloyd iterations and stops earlier once its assignments stop changing,
so the table gives the iterations run and the time per iteration too. The objective is the mean
squared distance of each point to its centroid after the last iteration (Eq. 2 of the paper).
The torch backend's assignment step is also timed alone and compared with the float32 matmul
throughput of this machine, measured in the same run.
"""
from __future__ import annotations

import argparse
import platform
import time

import faiss
import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from dctutor.clustering import assign_step, kmeans, preprocess


def mixture(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """Preprocessed features of a Gaussian mixture with k centres in 2d raw dimensions plus noise.

    Stands in for random-convnet features until the feature extractor exists: clustered but noisy,
    and put through the paper's PCA-whitening and L2 normalisation (Sec. 3.4).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 2 * d)).astype(np.float32)
    raw = centres[rng.integers(0, k, n)] + rng.normal(scale=3.0, size=(n, 2 * d)).astype(np.float32)
    return preprocess(raw, dim=d)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(x: torch.Tensor, centroids: torch.Tensor, chunk: int, repeats: int) -> tuple[float, float]:
    """GFLOP/s of a plain chunked torch.mm of the assignment's shape, and of the assignment step."""
    n, d, k = len(x), x.shape[1], len(centroids)
    flops = 2 * n * k * d
    out = torch.empty(min(chunk, n), k)

    def matmul():
        for start in range(0, n, chunk):
            rows = x[start:start + chunk]
            torch.mm(rows, centroids.T, out=out[: len(rows)])
    matmul()
    mm_s = best_of(repeats, matmul)
    x_sq = torch.linalg.vector_norm(x, dim=1).square_()
    labels, _ = assign_step(x, x_sq, centroids, chunk)
    assign_s = best_of(repeats, lambda: assign_step(x, x_sq, centroids, chunk, labels))
    return flops / mm_s / 1e9, flops / assign_s / 1e9


def sklearn_kmeans(x: np.ndarray, init: np.ndarray, iters: int, seed: int) -> tuple[float, int, float]:
    # tol=0 so scikit-learn runs until its labels stop changing, like the other two.
    model = KMeans(len(init), init=init, n_init=1, max_iter=iters, tol=0, algorithm="lloyd", random_state=seed)
    start = time.perf_counter()
    model.fit(x)
    return time.perf_counter() - start, model.n_iter_, model.inertia_ / len(x)


def faiss_kmeans(x: np.ndarray, init: np.ndarray, iters: int, seed: int) -> tuple[float, int, float]:
    km = faiss.Kmeans(x.shape[1], len(init), niter=iters, seed=seed, max_points_per_centroid=len(x),
                      min_points_per_centroid=1)
    start = time.perf_counter()
    km.train(x, init_centroids=init)
    seconds = time.perf_counter() - start
    dist, _ = km.index.search(x, 1)  # untimed: the objective of the final centroids
    return seconds, len(km.iteration_stats), float(dist.mean(dtype=np.float64))


def dctutor_kmeans(x: np.ndarray, init: np.ndarray, iters: int, seed: int, backend: str,
                   chunk_size: int) -> tuple[float, int, float]:
    result = kmeans(x, len(init), n_iter=iters, seed=seed, init=init, backend=backend, chunk_size=chunk_size)
    return result.seconds, len(result.objective), result.objective[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="number of points")
    parser.add_argument("--d", type=int, default=256, help="dimension after PCA (256 in the paper)")
    parser.add_argument("--ks", type=int, nargs="+", default=[100, 1000], help="numbers of clusters")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every library")
    parser.add_argument("--chunk-size", type=int, default=4096, help="rows per GEMM in dctutor-torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, the fastest is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"# k-means, n={args.n}, d={args.d}, at most {args.iters} iterations, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, faiss {faiss.__version__}\n")
    runners = {
        "dctutor-torch": lambda x, init: dctutor_kmeans(x, init, args.iters, args.seed, "torch", args.chunk_size),
        "faiss-cpu": lambda x, init: faiss_kmeans(x, init, args.iters, args.seed),
        "dctutor-faiss": lambda x, init: dctutor_kmeans(x, init, args.iters, args.seed, "faiss", args.chunk_size),
        "scikit-learn": lambda x, init: sklearn_kmeans(x, init, args.iters, args.seed),
    }
    rows = []
    with threadpool_limits(args.threads):
        for k in args.ks:
            x = mixture(args.n, args.d, k, args.seed)
            init = x[np.random.default_rng(args.seed).choice(args.n, k, replace=False)]
            # Round-robin repeats, keeping each one's fastest: a burst of load from other users of
            # the machine then slows one repeat of every implementation instead of all of one.
            runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in runners}
            for _ in range(args.repeats):
                for name, runner in runners.items():
                    runs[name].append(runner(x, init))
            best = {name: min(results) for name, results in runs.items()}
            base_s, _, base_obj = best["faiss-cpu"]
            for name, (seconds, iters, objective) in best.items():
                rows.append(f"| {k} | {name} | {seconds:.2f} | {iters} | {1000 * seconds / iters:.0f} | "
                            f"{seconds / base_s:.2f} | {objective:.5f} | {objective / base_obj - 1:+.3%} |")
            centroids = torch.from_numpy(x[: k])
            mm, assign = throughput(torch.from_numpy(x), centroids, args.chunk_size, args.repeats)
            rows.append(f"| {k} | torch.mm alone: {mm:.0f} GFLOP/s; dctutor assignment step: {assign:.0f} "
                        f"GFLOP/s ({assign / mm:.0%} of it) | | | | | | |")
    print("| k | implementation | seconds | iterations | ms / iteration | time / faiss | objective | vs faiss |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
