"""Training: losses (`losses`), the resumable loop (`loop`), the run folder's layout (`paths`), the caption bank
(`captions`), the stages (`stages`), export to a pipeline folder (`export`) and the CLI (`python -m muse.train`)."""
