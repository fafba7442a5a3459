"""Delivered versions through the store: captions laid out for the version's frame, Chinese-only
soft captions (no empty English track), covers from the clean master."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from reelflow.editing.caption_layout import SAFE_AREAS
from reelflow.media.ffmpeg import ffmpeg_exe, run
from reelflow.media.frames import iter_frames
from reelflow.media.probe import probe
from reelflow.render.edit import assemble_film, export_version, master_with_music
from reelflow.render.jobs import (
    CaptionCue,
    EditClip,
    EditJob,
    ExportSpec,
    MasterJob,
    VersionJob,
)
from reelflow.store.artifacts import ArtifactStore, Lineage
from reelflow.store.settings import S3Settings

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



# -- soft captions on a film assembled from parts (the path a rendered film takes) -----------

W, H, FPS = 128, 72, 12


@pytest.fixture(scope="module")
def assembled(s3_settings: S3Settings, tmp_path_factory: pytest.TempPathFactory) -> Films:
    """A two-shot film assembled from cached parts, and its master with a music bed."""
    store = ArtifactStore(s3_settings.with_bucket(f"t-{uuid.uuid4().hex[:16]}"))
    store.ensure_bucket()
    tmp = tmp_path_factory.mktemp("assembled")
    clips = []
    for i, source in enumerate(["testsrc2", "smptebars"]):
        path = tmp / f"c{i}.mp4"
        run(
            ["-f", "lavfi", "-i", f"{source}=size=160x90:rate={FPS}:duration=1",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
            what=f"make clip {i}",
        )  # fmt: skip
        key = store.put_file(f"projects/p/clips/c{i}.mp4", path, "video/mp4", {"kind": "clip"})
        clips.append(EditClip(shot=f"s{i}", key=key, duration=1.0, transition="cut",
                              transition_duration=0.0, trim_waste=False))
    edit_key = assemble_film(store, EditJob(project="p", clips=clips, width=W, height=H,
                                            fps=FPS, crf=23))  # fmt: skip
    music = tmp / "music.wav"
    run(["-f", "lavfi", "-i", "sine=frequency=330:duration=2", str(music)], what="make music")
    music_key = store.put_file("projects/p/inputs/music.wav", music, "audio/wav",
                               Lineage(kind="input"))  # fmt: skip
    master_key = master_with_music(
        store, MasterJob(project="p", edit_key=edit_key, music_key=music_key, fade_out=0.5)
    )
    return Films(store=store, edit_key=edit_key, master_key=master_key)


class Films(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: ArtifactStore
    edit_key: str
    master_key: str


def _streams(path: Path) -> tuple[list[str], bool]:
    """The languages of the file's subtitle tracks, and whether it has audio."""
    header = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    ).stderr
    languages = re.findall(r"Stream #0:\d+(?:\[\w+\])?\((\w+)\): Subtitle: mov_text", header)
    assert len(languages) == header.count("Subtitle:")  # every subtitle stream is tagged
    return languages, "Audio:" in header


@pytest.mark.parametrize("music", [False, True], ids=["silent", "music"])
@pytest.mark.parametrize("aspect", ["16:9", "9:16"])
@pytest.mark.parametrize("language", ["zh", "en"])
def test_soft_captions_in_one_language_give_one_track(
    assembled: Films, tmp_path: Path, music: bool, aspect: str, language: str
) -> None:
    """The delivered film carries one subtitle track per language that has text, with or
    without music (the version with audio muxes its tracks too), at either framing."""
    text = {"zh": ["冬天的山顶", "春天来了"], "en": ["The summit in winter", "Spring comes"]}
    job = VersionJob(
        project="p",
        master_key=assembled.master_key if music else assembled.edit_key,
        source_aspect="16:9",
        export=ExportSpec(aspect=aspect, captions="soft"),
        captions=[CaptionCue(duration=1.0, **{language: line}) for line in text[language]],
        title="t",
    )
    key = export_version(assembled.store, job)
    assert "parts" in assembled.store.lineage(key).extra  # built per part, not from the whole
    out = assembled.store.get_file(key, tmp_path / "soft.mp4")
    tracks, has_audio = _streams(out)
    assert tracks == [{"zh": "chi", "en": "eng"}[language]]
    assert has_audio == music
    info = probe(out)
    assert (info.width > info.height) == (aspect == "16:9")
    assert info.frame_count == 2 * FPS
