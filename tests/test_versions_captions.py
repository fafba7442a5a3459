"""Delivered versions through the store: captions laid out for the version's frame, Chinese-only
soft captions (no empty English track), covers from the clean master."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reelflow.editing.caption_layout import SAFE_AREAS
from reelflow.media.ffmpeg import ffmpeg_exe, run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from reelflow.render.edit import export_version
from reelflow.render.jobs import CaptionCue, ExportSpec, VersionJob
from reelflow.store.artifacts import ArtifactStore, Lineage

ZH25 = "我们一起去公园看樱花，然后喝一杯咖啡再慢慢走回家"


@pytest.fixture
def master_key(store: ArtifactStore, tmp_path: Path) -> str:
    src = tmp_path / "master.mp4"
    run(
        ["-f", "lavfi", "-i", "color=c=gray:size=640x360:rate=4:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(src)],
        what="make master",
    )  # fmt: skip
    return store.put_file("projects/p/edits/master.mp4", src, "video/mp4", Lineage(kind="edit"))


def _job(master_key: str, captions: str) -> VersionJob:
    return VersionJob(
        project="p",
        master_key=master_key,
        source_aspect="16:9",
        export=ExportSpec(aspect="9:16", captions=captions),
        captions=[CaptionCue(duration=1.0, zh=ZH25), CaptionCue(duration=1.0, zh="春天")],
        title="冬去春来",
    )


def test_chinese_only_soft_captions_export_one_chinese_track(
    store: ArtifactStore, master_key: str, tmp_path: Path
) -> None:
    key = export_version(store, _job(master_key, "soft"))
    out = store.get_file(key, tmp_path / "soft.mp4")
    header = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True
    ).stderr
    assert len(re.findall(r"Subtitle: mov_text", header)) == 1
    assert "(chi): Subtitle" in header and "(eng)" not in header


def test_burned_version_keeps_chinese_captions_in_the_vertical_safe_area(
    store: ArtifactStore, master_key: str, tmp_path: Path
) -> None:
    key = export_version(store, _job(master_key, "burn"))
    out = store.get_file(key, tmp_path / "burn.mp4")
    info = probe(out)
    assert info.width < info.height
    area = SAFE_AREAS["9:16"]
    frame = next(iter(iter_frames(out))).astype(int)
    ink = np.abs(frame - 128).sum(axis=2) > 60
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    assert rows.size > 0
    assert cols[0] >= info.width * area.left - 2 and cols[-1] <= info.width * (1 - area.right) + 2
    assert rows[-1] <= info.height * (1 - area.bottom) + 2 and rows[0] >= info.height * area.top

