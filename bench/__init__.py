"""reelflow benchmarks: `python -m bench` (or `make bench`); `--quick` is the CI smoke mode.

One module per benchmark, each a `run(ctx) -> Section`; `bench.common` holds timing, RSS
sampling, the private stack and the report writer; `bench.worker` runs measurements in fresh
subprocesses.
"""
