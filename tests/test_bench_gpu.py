"""`python -m bench --only gpu`: one "no CUDA" line without a GPU; its CUDA code path (build
from configs, plan, apply, time both sides, peak vs prediction) run on the tiny models on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Context
from bench.gpu import NO_CUDA, Case, Settings, run
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


@pytest.fixture
def one_thread():
    """One torch thread: on a shared CPU the default spins at every barrier (tiny models ran
    10x slower), as bench.common.worker_env says for the workers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_cuda_path_runs_on_the_tiny_models_on_cpu(tmp_path, one_thread):
    """Every video row's code path: the clip step vs the hand call, fps, each cache and the
    compile row (skipped on a CPU, with its reason), a plan at a further workload, a tighter
    budget's plan applied to a fresh build (fp8 storage: nothing fits 1 MB), and LTX-2's long
    clip with and without tiled decode on both sides. The image path is the next test's."""
    from reelflow.motion.tiny import build_tiny_ltx2
    from reelflow.motion.tiny_wan import build_tiny_wan22_ti2v

    wan = build_tiny_wan22_ti2v(tmp_path / "wan")
    ltx2 = build_tiny_ltx2(tmp_path / "ltx2")
    cases = [
        Case("tiny-wan", architecture_from_dir(wan), Workload(width=64, height=32, frames=5), 2,
             "video", source_dir=wan, backend="wan22-ti2v",
             plan_works=[Workload(width=64, height=64, frames=5)]),
        Case("tiny-ltx2", architecture_from_dir(ltx2), Workload(width=64, height=32, frames=9),
             2, "video", source_dir=ltx2, backend="ltx2", long_clip_seconds=0.35),
    ]
    work = tmp_path / "work"
    work.mkdir()
    settings = Settings(budgets=["1MB"], caches=("first-block",), seconds=600)
    section = run(Context(quick=True, reps=1, work=work), device="cpu", cases=cases,
                  settings=settings)
    assert section.status == "ok", section.notes
    rows = json.loads(next(n for n in section.notes if n.startswith("rows: "))[6:])
    assert [r["case"] for r in rows] == ["tiny-wan", "tiny-ltx2"]
    for row, case in zip(rows, cases, strict=True):
        assert "error" not in row, row
        assert row["diffusers_seconds"] > 0 and row["reelflow_seconds"] > 0
        assert row["predicted_peak_bytes"] > 0
        assert row["runtime_options"]["offload"] == "none"  # no budget on a CPU
        assert row["frames"] == case.work.frames and row["reelflow_fps"] > 0
        # at the backend's default steps (LTX-2 40, Wan TI2V 50) a clip takes longer
        assert row["default_steps"] > case.steps
        assert 0 < row["reelflow_fps_at_default_steps"] < row["reelflow_fps"]
        assert row["speed"][-1] == {"option": "compile",
                                    "note": "skipped on cpu: compiling pays off only on a CUDA "
                                            "device"}
        budget = next(e for e in row["plans"] if e["label"] == "1MB")
        assert not budget["fits"] and "error" not in budget and budget["seconds"] > 0
        assert "float8_e4m3fn storage" in budget["plan"]
    wan_row, ltx_row = rows
    cache = wan_row["speed"][0]
    assert cache["option"] == "first-block" and "error" not in cache, cache
    assert cache["run_seconds"] > 0 and 0 < cache["psnr"] <= 100
    # diffusers 0.42.1's first-block cache does not know LTX-2's block: the row says so
    assert "LTX2VideoTransformerBlock'> not registered" in ltx_row["speed"][0]["error"]
    further = next(e for e in wan_row["plans"] if e["label"] == "64x64x5")
    assert further["seconds"] > 0 and "note" not in further
    long = ltx_row["long_clip"]
    assert [(e["side"], e["tiled"]) for e in long] == [
        ("diffusers", False), ("diffusers", True), ("reelflow", False), ("reelflow", True)]
    assert all("error" not in e and e["run_seconds"] > 0 and e["frames"] == 9 for e in long)
    ratios = {r.name: r for r in section.ratios}
    for name in ("tiny-wan", "tiny-ltx2"):
        assert ratios[f"{name}: reelflow / diffusers"].goal == 1.05
    assert ratios["tiny-wan: first-block / plain"].value > 0
    assert section.figure("tiny-ltx2 fps").unit == "fps"
    notes = "\n".join(section.notes)
    for line in ("| tiny-wan |", "| tiny-wan | first-block |", "| tiny-wan | 1MB |",
                 "| tiny-ltx2 | 0.35 s, 9 frames | reelflow | tiled, chunked |"):
        assert line in notes, line


def test_the_image_step_and_rows_past_the_time_budget(tmp_path, one_thread):
    """The image path (reelflow.imaging.generate vs the hand call, goal 1.05) runs whatever the
    time; with none left after it, every further row says it was skipped, and why; the UNet's
    missing cache hooks are said before any time is asked."""
    from reelflow.imaging.tiny import build_tiny_sd

    sd = build_tiny_sd(tmp_path / "sd15")
    case = Case("tiny-sd", architecture_from_dir(sd), Workload(width=64, height=64), 2, "image",
                family="sd15", source_dir=sd)
    work = tmp_path / "work"
    work.mkdir()
    section = run(Context(quick=True, reps=1, work=work), device="cpu", cases=[case],
                  settings=Settings(budgets=["1MB"], caches=("first-block",), seconds=0))
    assert section.status == "ok", section.notes
    row = json.loads(next(n for n in section.notes if n.startswith("rows: "))[6:])[0]
    assert row["diffusers_seconds"] > 0 and row["reelflow_seconds"] > 0
    assert "frames" not in row  # an image: no clip step, no fps
    ratio = section.ratios[0]
    assert ratio.name == "tiny-sd: reelflow / diffusers" and ratio.value > 0 and ratio.goal == 1.05
    cache, compile_row = row["speed"]
    assert cache["note"] == "not supported: UNet2DConditionModel has no cache hooks"
    for entry in (compile_row, row["plans"][0]):
        assert entry["note"].startswith("skipped: needs ~"), entry
        assert "seconds" not in entry and "run_seconds" not in entry


def test_the_full_size_pipelines_assemble_from_their_configs():
    """The four full-size cases build into their diffusers pipelines (on meta: shapes only), with
    offline tokenizers and schedulers, so a CUDA run does not fail at construction."""
    from bench.gpu import build_pipeline, full_size_cases

    expected = {"sdxl": "StableDiffusionXLPipeline", "flux-dev": "FluxPipeline",
                "ltx-2": "LTX2ConditionPipeline", "wan2.2-ti2v-5b": "WanImageToVideoPipeline"}
    for case in full_size_cases():
        pipe = build_pipeline(case, "meta", "bfloat16")
        assert type(pipe).__name__ == expected[case.name]
        for spec in case.arch.components:
            assert getattr(pipe, spec.name).device.type == "meta"
    assert [c.steps for c in full_size_cases()][:2] == [30, 28]
