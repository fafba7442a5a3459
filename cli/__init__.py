"""The `reelflow` command: one module per command group, outside the core (`reelflow/` never
imports it). `cli.main.main` is the entry point; `python -m cli` runs it too."""
