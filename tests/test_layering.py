"""The core (`reelflow/`) is plain Python: importing any of its modules never imports Prefect,
`flows` or `tasks`, so the core stays usable (and testable) without the orchestrator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib, pkgutil, sys
import reelflow
names = [m.name for m in pkgutil.walk_packages(reelflow.__path__, "reelflow.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "flows", "tasks", "blocks"))
print(len(names))
print(",".join(bad))
"""


def test_core_imports_no_orchestrator() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, bad = done.stdout.split("\n")[-3:-1]
    assert int(count) > 40  # every module was imported, not a handful
    assert bad == "", f"core modules imported the orchestrator: {bad}"
