"""The start of LTX-2 (issue 24 item 2): a tiny LTX2ConditionPipeline built from configs (its
Gemma-3 text encoder and tokenizer in code, no hub), loaded through the code that loads a real
checkpoint, conditions on a first and a last frame and returns sound with the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelflow.motion.capabilities import capabilities
from reelflow.motion.diffusion import clear_pipeline_cache, load_pipeline
from reelflow.motion.tiny import build_tiny_ltx2


def test_tiny_ltx2_makes_picture_and_sound_from_two_frames(tmp_path: Path) -> None:
    import torch
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    path = build_tiny_ltx2(tmp_path / "tiny-ltx2")
    assert build_tiny_ltx2(path) == path  # idempotent
    declared = capabilities("ltx2")
    pipe, lock = load_pipeline(declared.pipeline or "", path)
    try:
        first = Image.new("RGB", (32, 32), (230, 240, 250))  # winter
        last = Image.new("RGB", (32, 32), (70, 160, 70))  # spring
        # crf=0: the default re-compresses each conditioning image through PyAV (not installed)
        conditions = [
            LTX2VideoCondition(frames=first, index=0, strength=1.0, crf=0),
            LTX2VideoCondition(frames=last, index=-1, strength=1.0, crf=0),
        ]
        call = {"prompt": "snow melts into spring", "negative_prompt": "", "num_frames": 9,
                "frame_rate": declared.native_fps, "num_inference_steps": 2,
                "max_sequence_length": 16, "output_type": "np",
                # no guidance passes (CFG, STG, modality) for noise weights: one pass a step
                "guidance_scale": 1.0, "stg_scale": 0.0, "modality_scale": 1.0,
                "audio_guidance_scale": 1.0, "audio_stg_scale": 0.0,
                "audio_modality_scale": 1.0}  # fmt: skip
        with lock:
            out = pipe(conditions=conditions, height=32, width=32,
                       generator=torch.Generator().manual_seed(0), **call)  # fmt: skip
            with pytest.raises(ValueError, match="divisible by 32"):  # the declared multiple
                pipe(conditions=conditions, height=48, width=48, **call)
        frames = np.asarray(out.frames)
        assert frames.shape == (1, 9, 32, 32, 3) and np.isfinite(frames).all()
        audio = out.audio
        assert audio.ndim == 3 and audio.shape[1] == 2 and audio.shape[2] > 0  # stereo waveform
        assert torch.isfinite(audio).all()
        assert pipe.vocoder.config.output_sampling_rate == 16000
    finally:
        clear_pipeline_cache()
