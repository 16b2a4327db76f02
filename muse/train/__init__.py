"""Training: losses (`losses`), the resumable loop (`loop`), stages and CLI (`python -m muse.train`)."""
