"""Benchmark scripts: thin timers over muse's public API and the playground's HTTP API (see README.md).

Each runs as a file (`python benchmarks/latency.py`) or a module (`python -m benchmarks.latency`)."""
