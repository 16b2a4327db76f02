"""Harnesses shared by the tests and the benchmarks: the playground as a live server (`running_app`)
and the drivers that abuse it (`tests.harness.robustness`). Imported as `tests.harness` from the
repository root; nothing here asserts, so benchmarks can report what the tests assert on."""

from .live_app import LiveApp, free_port, rss_mb, running_app

__all__ = ["LiveApp", "free_port", "rss_mb", "running_app"]
