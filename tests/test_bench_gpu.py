"""`python -m bench --only gpu`: one "no CUDA" line without a GPU; its CUDA code path (build
from configs, plan, apply, time both sides, peak vs prediction) run on the tiny models on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Context
from bench.gpu import NO_CUDA, Case, run
from reelflow.gpu.architectures import Workload
from reelflow.gpu.memory import architecture_from_dir

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "gpu", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [NO_CUDA]
    assert list(tmp_path.iterdir()) == []  # nothing measured, no report


def test_the_cuda_path_runs_on_the_tiny_models_on_cpu(tmp_path):
    from reelflow.imaging.tiny import build_tiny_sd
    from reelflow.motion.tiny import build_tiny_wan

    sd = build_tiny_sd(tmp_path / "sd15")
    wan = build_tiny_wan(tmp_path / "wan")
    cases = [
        Case("tiny-sd", architecture_from_dir(sd), Workload(width=64, height=64), 2, "image",
             family="sd15", source_dir=sd),
        Case("tiny-wan", architecture_from_dir(wan), Workload(width=32, height=32, frames=5), 2,
             "video", source_dir=wan),
    ]
    work = tmp_path / "work"
    work.mkdir()
    section = run(Context(quick=True, reps=1, work=work), device="cpu", cases=cases)
    assert section.status == "ok", section.notes
    rows = json.loads(next(n for n in section.notes if n.startswith("rows: "))[6:])
    assert [r["case"] for r in rows] == ["tiny-sd", "tiny-wan"]
    for row in rows:
        assert "error" not in row, row
        assert row["diffusers_seconds"] > 0 and row["predicted_peak_bytes"] > 0
        assert row["runtime_options"]["offload"] == "none"  # no budget on a CPU
    assert rows[0]["reelflow_seconds"] > 0 and "reelflow_seconds" not in rows[1]
    ratio = section.ratios[0]
    assert ratio.name == "tiny-sd: reelflow / diffusers" and ratio.value > 0
    assert "| tiny-wan |" in next(n for n in section.notes if n.startswith("plans, times"))


def test_the_full_size_pipelines_assemble_from_their_configs():
    """The four full-size cases build into their diffusers pipelines (on meta: shapes only), with
    offline tokenizers and schedulers, so a CUDA run does not fail at construction."""
    from bench.gpu import build_pipeline, full_size_cases

    expected = {"sdxl": "StableDiffusionXLPipeline", "flux-dev": "FluxPipeline",
                "ltx-2": "LTX2Pipeline", "wan2.2-ti2v-5b": "WanImageToVideoPipeline"}
    for case in full_size_cases():
        pipe = build_pipeline(case, "meta", "bfloat16")
        assert type(pipe).__name__ == expected[case.name]
        for spec in case.arch.components:
            assert getattr(pipe, spec.name).device.type == "meta"
    assert [c.steps for c in full_size_cases()][:2] == [30, 28]
