"""Finishing through the flow: cuts on the music's beats, captions, versions, 60 fps, 4K, covers.

The music is a click track the test synthesises at a known tempo and offset, so where every beat
falls is known exactly; the cuts are then found in the delivered pictures themselves.
"""

from __future__ import annotations

import json
import subprocess
import time
import wave
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest

from reelflow.media.ffmpeg import ffmpeg_exe
from reelflow.media.frames import read_frames
from reelflow.media.probe import probe
from reelflow.render.jobs import ExportSpec
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings

BPM, OFFSET, FPS = 120.0, 0.15, 12
BEATS = [OFFSET + i * 60.0 / BPM for i in range(40)]

STORYBOARD = """
title: "春天 · Spring"
project: finish-film
width: 320
height: 180
fps: 12
style: {model: some-model, palette: ["#f5c518"]}
music: {path: click.wav}
shots:
  - {id: a, description: a red square, duration: 1.5, camera: {movement: push-in},
     caption: {zh: 雪山, en: Snowy peaks}}
  - {id: b, description: a blue circle, duration: 1.5, camera: {movement: pan-left},
     caption: {zh: 城市, en: The city}}
  - {id: c, description: a green field, duration: 1.5, camera: {movement: static}}
  - {id: d, description: a yellow car, duration: 1.5, camera: {movement: pull-out},
     caption: {zh: 出发, en: Let's go}}
"""


def click_track(path: Path, seconds: float = 8.0, rate: int = 22050) -> Path:
    samples = np.zeros(int(seconds * rate), dtype=np.float32)
    click = np.sin(2 * np.pi * 1000 * np.arange(int(0.03 * rate)) / rate) * np.hanning(
        int(0.03 * rate)
    )
    for beat in BEATS:
        start = int(beat * rate)
        if start + len(click) < len(samples):
            samples[start : start + len(click)] += click.astype(np.float32)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((samples * 0.8 * 32767).astype(np.int16).tobytes())
    return path


def cut_frames(video: Path, count: int) -> list[int]:
    """The `count` frames that differ most from the frame before them: hard cuts."""
    previous, jumps = None, []
    for index, frame in enumerate(read_frames(video)):
        small = frame[::4, ::4].astype(np.float32)
        if previous is not None:
            jumps.append((float(np.abs(small - previous).mean()), index))
        previous = small
    return sorted(index for _, index in sorted(jumps, reverse=True)[:count])


@pytest.fixture(scope="module")
def finished(film_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from flows.produce_video import produce_video

    folder = tmp_path_factory.mktemp("finish")
    click_track(folder / "click.wav")
    board = folder / "board.yaml"
    board.write_text(STORYBOARD, encoding="utf-8")
    exports = [
        ExportSpec(aspect="16:9"),
        ExportSpec(aspect="9:16"),
        ExportSpec(aspect="16:9", fps=60, captions="none"),
        ExportSpec(aspect="16:9", size=(3840, 2160), captions="none"),
        ExportSpec(aspect="16:9", cut="fast", captions="none"),
        ExportSpec(aspect="16:9", cut="slow", captions="none"),
        ExportSpec(aspect="9:16", captions="soft"),  # not the burned 9:16: a file of its own
        ExportSpec(aspect="9:16"),  # asked twice: made once
    ]
    return produce_video(storyboard=str(board), approval="auto", profile="test", exports=exports)


def test_cuts_land_on_beats_in_both_aspects(
    finished: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    store = ArtifactStore(s3_settings.with_bucket("film"))
    manifest = json.loads(store.get_bytes(finished.manifest_key))
    cuts = np.cumsum(manifest["edit_durations"])[:-1]
    assert manifest["edit_durations"] != [1.5, 1.5, 1.5, 1.5]  # they moved
    for cut in cuts:
        assert min(abs(cut - beat) for beat in BEATS) <= 1 / FPS + 1e-6, (cut, BEATS)
    expected = [round(c * FPS) for c in cuts]
    for name in ("16x9-h264", "9x16-h264"):
        video = store.get_file(finished.versions[name], tmp_path / f"{name}.mp4")
        found = cut_frames(video, len(expected))
        assert all(abs(f - e) <= 1 for f, e in zip(found, expected, strict=True)), (found, expected)
    tall = probe(tmp_path / "9x16-h264.mp4")
    assert tall.height == 180 and abs(tall.width / tall.height - 9 / 16) < 0.03
    master = probe(store.get_file(finished.master_key, tmp_path / "master.mp4"))
    assert master.has_audio and abs(master.duration - 6.0) <= 0.2


def test_captions_are_burned_into_the_picture(
    finished: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    store = ArtifactStore(s3_settings.with_bucket("film"))
    captioned = store.get_file(finished.versions["16x9-h264"], tmp_path / "captioned.mp4")
    plain = store.get_file(finished.master_key, tmp_path / "plain.mp4")
    first_captioned = next(iter(read_frames(captioned))).astype(np.int16)
    first_plain = next(iter(read_frames(plain))).astype(np.int16)
    changed = np.abs(first_captioned - first_plain).max(axis=2) > 60  # text, not noise
    bottom, top = changed[int(180 * 0.6) :], changed[: int(180 * 0.4)]
    assert bottom.mean() > 0.01, bottom.mean()  # the caption's glyphs
    assert top.mean() < 0.001, top.mean()  # the rest of the picture is untouched


def test_sixty_fps_and_4k_versions_with_covers(
    finished: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    store = ArtifactStore(s3_settings.with_bucket("film"))
    versions = finished.versions
    smooth = probe(store.get_file(versions["16x9-h264-60fps-no-captions"], tmp_path / "60.mp4"))
    assert abs(smooth.fps - 60) < 0.01 and abs(smooth.duration - 6.0) <= 0.1
    big = probe(store.get_file(versions["16x9-h264-3840x2160-no-captions"], tmp_path / "4k.mp4"))
    assert (big.width, big.height) == (3840, 2160)
    from PIL import Image

    shapes = {"16x9": 16 / 9, "9x16": 9 / 16}
    assert set(finished.version_covers) == set(finished.versions)
    for name, key in finished.version_covers.items():
        cover = Image.open(store.get_file(key, tmp_path / f"{name}.png"))
        assert abs(cover.size[0] / cover.size[1] - shapes[name[:4]]) < 0.05, (name, cover.size)
        # drawn from a clean master, never from the captioned version it goes with
        (source,) = store.lineage(key).parents
        assert source not in finished.versions.values(), (name, source)


def test_fast_and_slow_cuts(finished: Any, s3_settings: S3Settings, tmp_path: Path) -> None:
    """Style versions from the same clips: the fast cut keeps 60% of each shot (at least 1 s)
    with hard cuts; the slow cut keeps the length and dissolves between shots."""
    store = ArtifactStore(s3_settings.with_bucket("film"))
    fast = store.get_file(finished.versions["16x9-h264-fast-no-captions"], tmp_path / "fast.mp4")
    slow = store.get_file(finished.versions["16x9-h264-slow-no-captions"], tmp_path / "slow.mp4")
    assert abs(probe(fast).duration - 4.0) <= 0.15  # 4 shots x max(1.0, 0.6 x 1.5)
    assert abs(probe(slow).duration - 6.0) <= 0.15
    assert len(cut_frames(fast, 3)) == 3

    # a dissolve has no single big jump: the slow cut's largest frame-to-frame change is smaller
    def biggest_jump(video: Path) -> float:
        previous, best = None, 0.0
        for frame in read_frames(video):
            small = frame[::4, ::4].astype(np.float32)
            if previous is not None:
                best = max(best, float(np.abs(small - previous).mean()))
            previous = small
        return best

    assert biggest_jump(slow) < biggest_jump(fast)


def test_versions_that_differ_in_captions_are_two_files(
    finished: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    """`--export 9:16 --export 9:16,captions=soft` (and 9:16 again): two files, each named by
    what makes it differ, both in the manifest; the repeated version is made once."""
    store = ArtifactStore(s3_settings.with_bucket("film"))
    burned, soft = finished.versions["9x16-h264"], finished.versions["9x16-h264-soft-captions"]
    assert burned != soft
    assert len(set(finished.versions.values())) == len(finished.versions) == 7
    manifest = json.loads(store.get_bytes(finished.manifest_key))
    assert manifest["versions"] == finished.versions
    headers = {}
    for name, key in (("burned", burned), ("soft", soft)):
        path = store.get_file(key, tmp_path / f"{name}.mp4")
        headers[name] = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
        ).stderr
        assert probe(path).height == 180 and probe(path).width < 180
    assert "Subtitle:" not in headers["burned"]
    assert headers["soft"].count("Subtitle: mov_text") == 2  # zh and en, not burned in
    # one task run per version, whatever the number of times it was asked for
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(manifest["run_id"])]))
    deadline = time.monotonic() + 30  # task runs reach the server as events, after the flow
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flow_run)
            names = sorted(run.name for run in runs if run.name.startswith("version-9x16"))
            if len(names) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert names == ["version-9x16-h264", "version-9x16-h264-soft-captions"]
