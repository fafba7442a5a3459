"""A video-model block switches the clip stage to a diffusers image-to-video backend.

The tiny LTX pipeline (built from configs) renders every shot, including the winter -> spring
first+last-frame transition whose last frame is the previous clip's last frame, restyled.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_produce_video import STORYBOARD

from reelflow.media.probe import probe
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings


def test_tiny_ltx_renders_the_film_including_the_transition(
    film_env: dict[str, str], s3_settings: S3Settings, tmp_path: Path
) -> None:
    from blocks.models import VideoModel
    from flows.produce_video import produce_video

    VideoModel(
        backend="ltx",
        model="tiny-ltx",
        options={"steps": 2, "max_frames": 9, "max_area": 64 * 32, "preset": "ultrafast",
                 # the cache guard runs in the flow (tests/test_speed_guard.py measures it on a
                 # two-block model; First Block Cache cannot hook the one block of tiny-ltx)
                 "speed": {"cache": "first-block", "guard_psnr": 1000}},
    ).save("tiny-ltx", overwrite=True)
    board = STORYBOARD.replace("project: tiny-film", "project: ltx-film")
    result = produce_video(
        storyboard=board, approval="auto", profile="test", video_model="tiny-ltx", exports=[]
    )
    store = ArtifactStore(s3_settings.with_bucket("film"))
    film = probe(store.get_file(result.film_key, tmp_path / "film.mp4"))
    assert (film.width, film.height) == (320, 180)
    assert abs(film.duration - 4.0) <= 0.2

    manifest = json.loads(store.get_bytes(result.manifest_key))
    for shot, key in manifest["clips"].items():
        lineage = store.lineage(key)
        assert lineage.extra["backend"] == "ltx", shot
        assert lineage.spec["backend_options"]["model"] == "@models/tiny-ltx"
        speed = lineage.extra["speed"]
        assert speed["cache"] is None and speed["guard"]["kept"] is False, shot
        assert speed["guard"]["shot"] == "a"  # one guard for the run, on its first clip
    from prefect.artifacts import Artifact

    guard = str(Artifact.get("speed-guard").data)
    assert "cache guard on shot a: cache turned OFF for the run" in guard
    transition = store.lineage(manifest["clips"]["d"])
    assert transition.parents == manifest["frames"]["d"]  # first and last frame, in order
    assert store.lineage(manifest["frames"]["d"][1]).extra["step"] == "restyle"
