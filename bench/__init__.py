"""Benchmarks (`make bench`): each module exposes ``bench_*() -> dict``; results go to bench/results/."""
