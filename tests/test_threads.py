"""Render steps called from two threads at once (the flow runs shots in parallel): one model load
per process, and each thread gets exactly what it would have got alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelflow.imaging.generate import ImageSpec, generate
from reelflow.imaging.models import LoraSpec, ModelSource
from reelflow.imaging.pipelines import PipelineCache
from reelflow.imaging.tiny import build_tiny_lora, build_tiny_sd


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment (a barrier), one thread each; re-raise any error."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def runner(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as err:  # noqa: BLE001 - handed back to the test thread
            results[i] = err

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


@pytest.mark.slow
def test_two_threads_share_one_pipeline_with_different_loras(tmp_path: Path) -> None:
    sd = build_tiny_sd(tmp_path / "sd15")
    ink = LoraSpec(path=str(build_tiny_lora(sd, tmp_path / "ink.safetensors", seed=1)), weight=1.0)
    source = ModelSource(source=str(sd), device="cpu")

    def spec(loras: list[LoraSpec]) -> ImageSpec:
        return ImageSpec(prompt="a fox", negative_prompt="", seed=3, width=64, height=64,
                         steps=2, guidance=5.0, model=source, loras=loras)  # fmt: skip

    alone = PipelineCache()
    plain, inked = generate(spec([]), cache=alone), generate(spec([ink]), cache=alone)
    assert np.abs(np.asarray(plain, int) - np.asarray(inked, int)).mean() > 1.0

    shared = PipelineCache()
    results = in_threads(
        lambda: generate(spec([]), cache=shared),
        lambda: generate(spec([ink]), cache=shared),
        lambda: generate(spec([]), cache=shared),
        lambda: generate(spec([ink]), cache=shared),
    )
    assert shared.loads == 1  # one load per process, however many threads asked at once
    for got, want in zip(results, [plain, inked, plain, inked], strict=True):
        assert np.array_equal(np.asarray(got), np.asarray(want))


def test_two_threads_get_one_motion_backend() -> None:
    """A backend whose construction is slow (a model load) is built once, not once per thread."""
    import time

    from reelflow.motion.backends import AnimaticBackend, register_backend
    from reelflow.render import clips

    built: list[object] = []

    class SlowToLoad(AnimaticBackend):
        def __init__(self, **options: Any) -> None:
            time.sleep(0.3)
            super().__init__(**options)
            built.append(self)

    register_backend("slow-to-load-test", SlowToLoad)
    options = {"preset": "ultrafast"}
    results = in_threads(*[lambda: clips._backend("slow-to-load-test", options)] * 3)
    assert len(built) == 1
    assert all(r is built[0] for r in results)
