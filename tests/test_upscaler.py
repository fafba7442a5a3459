"""A learned upscaler for delivery (`--export 9:16,upscaler=@models/NAME`, diffusers' SD x4
upscaler): how an export names it, that a version without one keeps its key, and that the
upscaler's folder content is in the version's key. The delivered film itself (size, picture,
captions drawn after the upscale, lineage, manifest) is checked through the CLI in
tests/test_cli_commands.py::test_render_out_and_export (tests/support/upscaled.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.errors import InputError
from reelflow.media.ffmpeg import run
from reelflow.media.probe import probe
from reelflow.render import weights
from reelflow.render.edit import export_version
from reelflow.render.jobs import parse_export, profile_upscaler, version_job
from reelflow.render.profiles import get_profile
from reelflow.store.artifacts import ArtifactStore
from tests.support.boards import storyboard
from tests.support.upscaled import UPSCALED_EXPORT, UPSCALED_SIZE, tiny_upscaler

MASTER = "projects/test/edit/m.mp4"


def _board(width: int = 160, height: int = 96):  # noqa: ANN202 - a Storyboard
    return storyboard([{"id": "a", "description": "a car", "duration": 1.0}],
                      width=width, height=height)  # fmt: skip


def test_export_names_its_upscaler_and_a_version_without_one_keeps_its_key() -> None:
    export = parse_export("9:16,upscaler=@models/x4-upscaler,upscale_steps=2")
    assert export.upscaler == "@models/x4-upscaler" and export.upscale_steps == 2
    assert export.name == "9x16-h264-up-x4-upscaler-2steps"  # never the filter version's name
    plain = parse_export("9:16")
    assert "upscaler" not in plain.model_dump() and "upscale_steps" not in plain.model_dump()
    job = version_job(_board(1280, 720), MASTER, plain, [1.0])
    assert job.upscaler is None and "upscaler" not in job.model_dump()  # the keys of before
    with pytest.raises(InputError, match="upscale_steps must be a whole number"):
        parse_export("9:16,upscale_steps=many")
    nowhere = parse_export("9:16,upscaler=@models/nowhere")
    with pytest.raises(InputError, match=r"--export 9x16-h264-up-nowhere: upscaler @models/nowh"):
        version_job(_board(1280, 720), MASTER, nowhere, [1.0])


def test_the_upscalers_content_is_in_the_versions_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("REELFLOW_WEIGHT_HASHES", str(tmp_path / "hashes.json"))
    export = parse_export(UPSCALED_EXPORT)
    tiny_upscaler(tmp_path / "models", seed=0)
    first = version_job(_board(), MASTER, export, [1.0])
    assert first.upscaler is not None and first.upscaler.sha256
    # the key names the upscaler by its content (the folder's hash), with its steps
    keyed = weights.identity_view(first.model_dump(mode="json"))["upscaler"]
    assert keyed == {"sha256": first.upscaler.sha256, "steps": 1, "noise_level": 20, "seed": 0}
    tiny_upscaler(tmp_path / "models", seed=1)  # other weights, the same folder
    other = version_job(_board(), MASTER, export, [1.0])
    assert other.upscaler is not None and other.upscaler.sha256 != first.upscaler.sha256
    assert other.output_key() != first.output_key()
    # the same weights in another folder: the same key apart from the version's name
    moved = tmp_path / "models" / "tiny-x4"
    moved.rename(tmp_path / "models" / "elsewhere")
    again = version_job(_board(), MASTER, parse_export(UPSCALED_EXPORT.replace(
        "tiny-x4", "elsewhere")), [1.0])  # fmt: skip
    assert again.upscaler is not None and again.upscaler.sha256 == other.upscaler.sha256
    # nothing is upscaled (the delivery is no wider than the reframed film): no upscaler
    small = parse_export("9:16,size=360x640,upscaler=@models/elsewhere")  # 404x720 reframed
    assert version_job(_board(1280, 720), MASTER, small, [1.0]).upscaler is None


def test_a_master_without_parts_is_upscaled_whole_with_its_sound(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A master with no recorded parts (a film not assembled here) takes the whole-film path:
    the same upscaler, the export's size and frame count, the master's sound kept."""
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    tiny_upscaler(tmp_path / "models")
    master = tmp_path / "master.mp4"
    run(["-f", "lavfi", "-i", "testsrc2=size=160x96:rate=8:duration=0.5",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-shortest",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         str(master)], what="a master with sound")  # fmt: skip
    master_key = store.put_file("projects/whole/edit/master.mp4", master, "video/mp4",
                                {"kind": "edit"})  # fmt: skip
    job = version_job(_board(), master_key, parse_export(UPSCALED_EXPORT + ",captions=none"),
                      [0.5])  # fmt: skip
    key = export_version(store, job)
    film = probe(store.get_file(key, tmp_path / "film.mp4"))
    assert (film.width, film.height) == UPSCALED_SIZE and film.frame_count == 4, film
    assert film.has_audio
    lineage = store.lineage(key)
    assert "parts" not in lineage.extra  # the whole-film path, not the parts'
    assert lineage.extra["upscaler"].startswith("@models/tiny-x4 (sha256 ")


def test_a_profiles_upscaler_serves_the_versions_that_name_none() -> None:
    profile = get_profile("full").model_copy(update={"upscaler": "@models/x4", "upscale_steps": 8})
    chosen = profile_upscaler(parse_export("9:16"), profile)
    assert (chosen.upscaler, chosen.upscale_steps) == ("@models/x4", 8)
    assert chosen.name == "9x16-h264-up-x4-8steps"
    own = parse_export("9:16,upscaler=@models/mine")
    assert profile_upscaler(own, profile) == own  # the export's own choice wins
    plain = parse_export("9:16")
    assert profile_upscaler(plain, get_profile("full")) == plain  # none configured: the filter


def test_lineage_says_what_took_a_version_to_its_size() -> None:
    from reelflow.editing.upscaler import UpscalerChoice
    from reelflow.render.edit.versions import FILTER_UPSCALE, upscaled_by

    learned = UpscalerChoice(path="@models/x4", sha256="ab" * 32)
    assert upscaled_by(learned) == f"@models/x4 (sha256 {'ab' * 6})"
    assert upscaled_by(None) == FILTER_UPSCALE  # sized, no model: Lanczos + unsharp
    assert upscaled_by(None, scaled=False).startswith("none")


def test_the_model_is_fed_no_more_than_its_output_needs() -> None:
    """A 4x model on a 720x1280 frame would draw 2880x5120 for a 1080x1920 delivery: it is fed
    270x480 instead; a frame already below a quarter of the delivery goes in as it is."""
    from reelflow.editing.upscaler import model_input_size

    assert model_input_size((720, 1280), (1080, 1920), 4) == (270, 480)
    assert model_input_size((404, 720), (1080, 1920), 4) == (270, 482)  # covers the width
    assert model_input_size((1280, 720), (3840, 2160), 4) == (960, 540)
    assert model_input_size((54, 96), (270, 480), 4) == (54, 96)  # 5x: nothing to spare
    w, h = model_input_size((405, 720), (1081, 1921), 4)  # odd sizes: still covers, even
    assert w * 4 >= 1081 and h * 4 >= 1921 and w % 2 == h % 2 == 0
