"""Waste removal in the edit step: real ffmpeg clips, a real S3 server, the trims in the lineage."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.media.ffmpeg import run
from reelflow.media.frames import extract_frame
from reelflow.media.probe import probe
from reelflow.render.edit import assemble_film, edit_trims
from reelflow.render.jobs import EditClip, EditJob
from reelflow.store.artifacts import ArtifactStore
from tests.support.clips import lavfi_clip

W, H, FPS = 128, 72, 24


def generated_clip(out: Path, *, frozen_head: int, black_tail: int, moving: int) -> Path:
    """What image-to-video models often give: the conditioning still held for a few frames,
    then motion, then black frames at the end. `frozen_head` counts every frame showing the
    first picture (the original and its clones)."""
    return lavfi_clip(
        out, "testsrc2", moving / FPS, f"{W}x{H}", FPS,
        vf=f"tpad=start={frozen_head - 1}:start_mode=clone:stop={black_tail}:stop_mode=add:"
           "color=black",
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("edit-waste")
    return {
        "wasteful": generated_clip(d / "a.mp4", frozen_head=12, black_tail=6, moving=48),
        "short": generated_clip(d / "b.mp4", frozen_head=12, black_tail=6, moving=18),
    }


def _differ(a, b) -> bool:
    return float(abs(a.astype(int) - b.astype(int)).mean()) > 2.0


def _put(store: ArtifactStore, path: Path, shot: str) -> str:
    return store.put_file(f"projects/waste/shots/{shot}/clips/{'ab' * 8}.mp4", path, "video/mp4")


def test_edit_trims_frozen_head_and_black_tail_and_keeps_the_storyboard_length(
    store: ArtifactStore, clips: dict[str, Path]
) -> None:
    assert probe(clips["wasteful"]).frame_count == 11 + 48 + 6
    durations = {"one": 2.0, "two": 1.5, "three": 1.0}
    job = EditJob(
        project="waste",
        clips=[
            EditClip(shot="one", key=_put(store, clips["wasteful"], "one"), duration=2.0,
                     transition="cut", transition_duration=0.0),
            # 35 frames of source, 17 of them waste: trimmed, then held to fill 1.5 s
            EditClip(shot="two", key=_put(store, clips["short"], "two"), duration=1.5,
                     transition="crossfade", transition_duration=0.25),
            EditClip(shot="three", key=_put(store, clips["wasteful"], "three"), duration=1.0,
                     transition="cut", transition_duration=0.0, trim_waste=False),
        ],
        width=W, height=H, fps=FPS, crf=23,
    )  # fmt: skip
    key = assemble_film(store, job)
    trims = edit_trims(store, key)

    assert set(trims) == {"one", "two"}  # "three" opted out
    one = trims["one"]
    assert one["head"] == pytest.approx(11 / FPS, abs=1e-3)  # a freeze keeps one frame
    assert one["tail"] == pytest.approx(6 / FPS, abs=1e-3)  # black goes entirely
    assert one["kept"] == pytest.approx(48 / FPS, abs=1e-3) and one["held"] == 0
    assert any(f.startswith("freeze") for f in one["found"])
    assert any(f.startswith("black") for f in one["found"])
    two = trims["two"]
    assert two["kept"] == pytest.approx(18 / FPS, abs=1e-3)
    assert two["held"] == pytest.approx(1.5 - 18 / FPS, abs=1e-3)

    film = store.get_file(key, clips["wasteful"].parent / "film.mp4")
    info = probe(film)
    assert info.frame_count == round(sum(durations.values()) * FPS)  # the storyboard's length
    # shot one moves from its first frame (the freeze is cut); shot two ends on a held picture,
    # not on its black tail; shot three (opted out) still starts frozen
    assert _differ(extract_frame(film, 0), extract_frame(film, 1))
    assert extract_frame(film, 83).mean() > 40
    assert not _differ(extract_frame(film, 84), extract_frame(film, 85))
    # the same job is not assembled twice: the key (and its trims) are found
    assert assemble_film(store, job) == key and edit_trims(store, key) == trims


def test_animatic_clips_and_still_shots_are_left_alone(
    store: ArtifactStore, clips: dict[str, Path]
) -> None:
    """Designed motion (the animatic eases in on purpose) and a held still are not waste."""
    from reelflow.editing.assemble import AssemblyClip
    from reelflow.editing.waste import trim_for_shot
    from reelflow.store.artifacts import Lineage

    key = store.put_file(
        f"projects/waste/shots/one/clips/{'ef' * 8}.mp4", clips["wasteful"], "video/mp4",
        Lineage(kind="clip", spec={"backend": "animatic"}, extra={"backend": "animatic"}),
    )  # fmt: skip
    job = EditJob(
        project="waste",
        clips=[EditClip(shot="one", key=key, duration=2.0, transition="cut",
                        transition_duration=0.0)],
        width=W, height=H, fps=FPS, crf=23,
    )  # fmt: skip
    assert edit_trims(store, assemble_film(store, job)) == {}

    still = clips["wasteful"].parent / "still.mp4"
    run(["-f", "lavfi", "-i", f"color=c=gray:s={W}x{H}:r={FPS}:d=2", "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(still)], what="make still")  # fmt: skip
    clip = AssemblyClip(path=still, duration=2.0)
    assert trim_for_shot("still", clip) == (clip, None)
