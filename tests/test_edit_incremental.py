"""Incremental edit: the film is cached by part, one changed shot re-encodes only its parts,
and a film built incrementally is the same film as one built cold."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from reelflow.editing.assemble import AssemblyClip, plan_parts
from reelflow.media.ffmpeg import run
from reelflow.media.probe import probe
from reelflow.progress import ProgressEvent, listening
from reelflow.render.edit import assemble_film, export_version, film_parts, make_cover
from reelflow.render.jobs import (
    CaptionCue,
    CoverJob,
    EditClip,
    EditJob,
    ExportSpec,
    VersionJob,
)
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from tests.support.clips import lavfi_clip

W, H, FPS = 96, 64, 12


def _clip(store: ArtifactStore, tmp: Path, name: str, source: str) -> str:
    path = lavfi_clip(tmp / f"{name}.mp4", source, 1.5, "128x96", FPS)
    key = keys.clip_key("inc", name, hashlib.sha256(name.encode()).hexdigest()[:16])
    return store.put_file(key, path, "video/mp4", {"kind": "clip"})


def _job(clip_keys: list[str]) -> EditJob:
    transitions = ["cut", "crossfade", "cut", "dip-to-black"]
    return EditJob(
        project="inc",
        clips=[
            EditClip(shot=f"s{i}", key=k, duration=1.0, transition=transitions[i],
                     transition_duration=0.5)
            for i, k in enumerate(clip_keys)
        ],  # fmt: skip
        width=W,
        height=H,
        fps=FPS,
        crf=23,
    )


def _frame_md5(path: Path) -> list[str]:
    out = path.with_suffix(".md5")
    run(["-i", str(path), "-map", "0:v", "-f", "framemd5", str(out)], what="framemd5")
    lines = out.read_text()
    return [ln.rsplit(",", 1)[-1].strip() for ln in lines.splitlines() if ln and ln[0] != "#"]


def test_parts_split_bodies_and_transitions() -> None:
    clips = [AssemblyClip(path=Path(f"{i}.mp4"), duration=1.0,
                          transition="crossfade" if i == 1 else "cut", transition_duration=0.5)
             for i in range(3)]  # fmt: skip
    parts = plan_parts(clips, FPS)
    assert [(p.kind, p.shots, p.frames) for p in parts] == [
        ("body", (0,), 12), ("transition", (0, 1), 6), ("body", (1,), 6), ("body", (2,), 12)
    ]  # fmt: skip
    assert [p.first_frame for p in parts] == [0, 12, 18, 24]


@pytest.mark.slow
def test_one_changed_shot_reencodes_only_its_parts(store: ArtifactStore, tmp_path: Path) -> None:
    sources = ["testsrc2", "color=c=red", "color=c=green", "color=c=blue", "smptebars"]
    clip_keys = [_clip(store, tmp_path, f"c{i}", s) for i, s in enumerate(sources)]
    cold_job = _job(clip_keys[:4])
    events: list[ProgressEvent] = []
    with listening(events.append):  # what `reelflow render` prints while the edit works
        cold_key = assemble_film(store, cold_job)
    assert [(e.stage, e.done, e.total) for e in events][-1] == ("edit", 6, 6)
    cold_parts = {k for k, _ in film_parts(cold_job)}
    assert set(store.lineage(cold_key).extra["encoded"]) == cold_parts

    # shot 2 (entered by a cut, left by a dip to black) gets a new clip: its body and the
    # transition out of it are encoded again, nothing else
    changed = _job([clip_keys[0], clip_keys[1], clip_keys[4], clip_keys[3]])
    inc_key = assemble_film(store, changed)
    encoded = store.lineage(inc_key).extra["encoded"]
    kinds = {p.kind + str(p.shots) for k, p in film_parts(changed) if k in encoded}
    assert kinds == {"body(2,)", "transition(2, 3)"}
    assert len(encoded) == 2

    # frame-exact: 4 shots x 1 s at 12 fps, whatever the transitions
    inc = store.get_file(inc_key, tmp_path / "inc.mp4")
    info = probe(inc)
    assert (info.frame_count, info.width, info.height) == (48, W, H)

    # the same film built cold, in another bucket: byte-identical (x264 at fixed threads)
    other = ArtifactStore(store.settings.with_bucket(store.bucket + "-cold"))
    other.ensure_bucket()
    for k in clip_keys:
        other.put_file(k, store.get_file(k, tmp_path / Path(k).name), "video/mp4", {"kind": "clip"})
    cold = other.get_file(assemble_film(other, changed), tmp_path / "cold.mp4")
    assert _frame_md5(cold) == _frame_md5(inc)
    assert cold.read_bytes() == inc.read_bytes()


def _analyses(store: ArtifactStore, kind: str) -> set[str]:
    """Analysis objects (measurements kept beside the parts) of one kind: waste or cover-score."""
    found = set()
    for key in store.list("projects/inc/edits/analysis/"):
        if key.endswith(".json") and not key.endswith(".lineage.json"):
            spec = store.lineage(key).spec
            if kind in spec:
                found.add(key)
    return found


@pytest.mark.slow
def test_a_changed_shot_is_measured_again_only_where_it_changed(
    store: ArtifactStore, tmp_path: Path
) -> None:
    """The edit's waste check and the cover's frame scores are kept per clip and per film part:
    after one shot changed, only its clip is decoded for waste and only the cover samples in
    the re-encoded parts are scored again; the cover is the one a cold build makes."""
    sources = ["testsrc2", "color=c=red", "rgbtestsrc", "color=c=blue", "smptebars"]
    clip_keys = [_clip(store, tmp_path, f"m{i}", s) for i, s in enumerate(sources)]
    cold_job = _job(clip_keys[:4])
    cold_film = assemble_film(store, cold_job)
    waste = _analyses(store, "waste")
    assert len(waste) >= 4  # one per clip (other tests of this module may add their own)
    make_cover(store, CoverJob(project="inc", source_key=cold_film, title="冬去春来",
                               width=W, height=H))
    scores = _analyses(store, "cover-score")
    assert scores

    changed = _job([clip_keys[0], clip_keys[1], clip_keys[4], clip_keys[3]])
    film = assemble_film(store, changed)
    assert len(_analyses(store, "waste") - waste) == 1  # the new clip only
    cover_key = make_cover(store, CoverJob(project="inc", source_key=film, title="冬去春来",
                                           width=W, height=H))
    new_scores = _analyses(store, "cover-score") - scores
    encoded = set(store.lineage(film).extra["encoded"])
    assert new_scores  # the changed shot's parts hold some samples...
    assert {store.lineage(k).spec["cover-score"] for k in new_scores} <= encoded  # ...only they

    # the same cover from a cold build in another bucket: byte-identical
    other = ArtifactStore(store.settings.with_bucket(store.bucket + "-cover"))
    other.ensure_bucket()
    for k in clip_keys:
        other.put_file(k, store.get_file(k, tmp_path / Path(k).name), "video/mp4", {"kind": "clip"})
    cold_cover = make_cover(other, CoverJob(project="inc", source_key=assemble_film(other, changed),
                                            title="冬去春来", width=W, height=H))
    assert cold_cover == cover_key
    assert other.get_bytes(cold_cover) == store.get_bytes(cover_key)
    assert store.lineage(film).extra["trims"] == other.lineage(film).extra["trims"]


def _version(clip_keys: list[str], captions: list[tuple[str, str]], aspect: str) -> VersionJob:
    return VersionJob(
        project="inc",
        master_key="",
        source_aspect="16:9",
        export=ExportSpec(aspect=aspect),
        captions=[CaptionCue(duration=1.0, zh=zh, en=en) for zh, en in captions],
        title="t",
    )


@pytest.mark.slow
@pytest.mark.parametrize("aspect", ["16:9", "9:16"])
def test_version_by_part_one_caption_change(
    store: ArtifactStore, tmp_path: Path, aspect: str
) -> None:
    sources = ["testsrc2", "color=c=red", "color=c=green", "smptebars"]
    clip_keys = [_clip(store, tmp_path, f"v{i}", s) for i, s in enumerate(sources)]
    film_key = assemble_film(store, _job(clip_keys))
    film_parts_keys = [k for k, _ in film_parts(_job(clip_keys))]
    captions = [("雪山", "snow"), ("", ""), ("城市", "city"), ("", "")]

    def version(caps: list[tuple[str, str]]) -> tuple[Path, list[str], list[str]]:
        job = _version(clip_keys, caps, aspect).model_copy(update={"master_key": film_key})
        key = export_version(store, job)
        lin = store.lineage(key).extra
        return store.get_file(key, tmp_path / f"{job.spec_hash()}.mp4"), lin["encoded"], [
            p["key"] for p in lin["parts"]
        ]

    cold, encoded, parts = version(captions)
    info = probe(cold)
    assert info.frame_count == 48
    assert (info.width, info.height) == ((96, 64) if aspect == "16:9" else (36, 64))
    # the master is a fast intermediate: every part of the version is its own (one) encode,
    # none is a master part, even an uncaptioned one at the same framing
    assert not set(parts) & set(film_parts_keys)
    assert len(encoded) == len(parts) == 6

    # one caption changes: only the part(s) that show it are encoded again
    changed = [captions[0], captions[1], ("城市之春", "city in spring"), captions[3]]
    inc, encoded2, parts2 = version(changed)
    assert len(encoded2) == 1 and encoded2[0] == parts2[3] and parts2[3] != parts[3]
    assert [a == b for a, b in zip(parts, parts2, strict=True)].count(False) == 1
    assert probe(inc).frame_count == 48
    assert _frame_md5(inc) != _frame_md5(cold)


def test_frames_at_seeks_to_the_exact_frames(tmp_path: Path) -> None:
    """Covers seek to their samples; the frames found must be the ones a full decode gives."""
    from reelflow.media.frames import extract_frame, frames_at

    film = tmp_path / "film.mp4"
    run(
        ["-f", "lavfi", "-i", f"testsrc2=size=96x64:rate={FPS}:duration=4", "-c:v", "libx264",
         "-preset", "ultrafast", "-g", "12", "-pix_fmt", "yuv420p", str(film)],
        what="make test film",
    )  # fmt: skip
    picks = [1, 11, 12, 13, 30, 46]
    got = dict(frames_at(film, picks))
    assert sorted(got) == picks
    for index in picks:
        assert np.array_equal(got[index], extract_frame(film, index)), index
