"""`reelflow lineage` and `reelflow regenerate` on a tiny film made by the real steps.

Tiny diffusers models on CPU, a real S3 bucket (`weed mini`), ffmpeg for the clip and the edit;
the CLI is called in-process with the bucket's settings in the environment.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

import cli.main as cli
from reelflow.render import clips, edit, images, models, weights
from reelflow.render.jobs import EditClip, EditJob, clip_job, hires_job, image_job
from reelflow.render.lineage import lineage_tree, render_text
from reelflow.render.manifest import RunManifest
from reelflow.render.profiles import get_profile
from reelflow.render.regenerate import regenerate
from reelflow.store import keys
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import parse_storyboard

BOARD = """
title: 来历 Lineage
project: lineage
width: 128
height: 72
fps: 8
style: {model: m}
shots:
  - id: harbour
    description: 黎明的港口 a harbour at dawn
    duration: 1
    loras: [{name: ink, path: ink.safetensors, weight: 0.8}]
"""


@pytest.fixture(scope="module")
def film(s3_settings: S3Settings, tmp_path_factory: pytest.TempPathFactory):
    """A one-shot film: 2 variants, hi-res of variant 1, an animatic clip, the edit, a manifest."""
    root = tmp_path_factory.mktemp("lineage-models")
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    env = {
        "REELFLOW_MODELS": str(root),
        "REELFLOW_WEIGHT_HASHES": str(root / "weight-hashes.json"),
        "REELFLOW_S3_ENDPOINT": s3_settings.endpoint,
        "REELFLOW_S3_ACCESS_KEY": s3_settings.access_key,
        "REELFLOW_S3_SECRET_KEY": s3_settings.secret_key.get_secret_value(),
        "REELFLOW_S3_BUCKET": bucket,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        store = ArtifactStore(s3_settings.with_bucket(bucket))
        store.ensure_bucket()
        models.prepare_demo_models(["ink"])
        board = parse_storyboard(BOARD)
        shot = board.shots[0]
        profile = get_profile("test").model_copy(update={"hires_scale": 1.5})
        job = image_job(board, shot, profile)
        variants = images.render_variants(store, job)
        hires = images.hires_fix(store, hires_job(job, variants[1], 1, profile))
        clip = clips.render_clip(
            store, clip_job(board, shot, profile).model_copy(update={"image_key": hires})
        )
        film_key = edit.assemble_film(
            store,
            EditJob(
                project=board.project,
                clips=[EditClip(shot=shot.id, key=clip, duration=1.0, transition="cut",
                                transition_duration=0.0)],
                width=128, height=72, fps=8, crf=30,
            ),
        )
        now = datetime.now(UTC)
        manifest = RunManifest(
            run_id="run-1", project=board.project, title=board.title,
            storyboard_key=keys.storyboard_key(board.project, "ab" * 8),
            storyboard_hash="ab" * 8, profile="test", approval_policy="manual",
            started_at=now, duration=1.0, film_key=film_key, cover_key=film_key,
            variants={shot.id: variants}, chosen_images={shot.id: hires}, clips={shot.id: clip},
            approvals=[{"gate": "images", "round": 1, "policy": "manual", "reviewer": "张导",
                        "decided_at": now.isoformat(), "decision": {"picks": {shot.id: 1}}}],
        )
        store.put_json(keys.manifest_key(board.project, "run-1"), manifest)
        yield {"store": store, "env": env, "variants": variants, "hires": hires, "clip": clip,
               "film": film_key, "root": root}


@pytest.fixture
def in_env(film: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    for name, value in film["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(weights, "_memo", None)
    return film


def _walk(node):
    yield node
    for parent in node.parents:
        yield from _walk(parent)


def test_lineage_of_a_downloaded_film_reaches_the_variant(
    in_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store: ArtifactStore = in_env["store"]
    tree = lineage_tree(store, in_env["film"])
    chain = list(_walk(tree.root))
    assert [n.key for n in chain] == [in_env["film"], in_env["clip"], in_env["hires"],
                                      in_env["variants"][1]]
    variant = chain[-1]
    assert variant.step == "variant" and variant.details["variant"] == 1
    assert "黎明的港口" in variant.details["prompt"]
    lora = weights.content_hash(str(in_env["root"] / "loras" / "ink.safetensors"))
    assert {w["name"]: w["sha256"] for w in variant.weights}["ink"] == lora
    assert tree.runs and tree.runs[0].roles == ["film", "cover", "chosen image of shot harbour",
                                                "clip of shot harbour",
                                                "variant 1 of shot harbour"]

    downloaded = store.get_file(in_env["film"], tmp_path / "final.mp4")
    assert cli.main(["lineage", str(downloaded)]) == 0
    out = capsys.readouterr().out
    assert out == render_text(tree) + "\n"
    assert f"lora ink x0.8  sha256 {lora[:12]}" in out
    assert "images round 1: picks={'harbour': 1} (张导" in out

    assert cli.main(["lineage", f"s3://{store.bucket}/{in_env['hires']}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["root"]["parents"][0]["key"] == in_env["variants"][1]


def test_lineage_of_an_unknown_file_is_one_line(
    in_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = tmp_path / "stray.mp4"
    stray.write_bytes(b"not a film")
    assert cli.main(["lineage", str(stray)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "stray.mp4: no object with its sha256" in err
    assert cli.main(["lineage", "projects/lineage/nothing.png"]) == 2


def test_variant_hires_and_clip_regenerate_bit_identical(
    in_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store: ArtifactStore = in_env["store"]
    result = regenerate(store, in_env["variants"][1])
    assert result.identical and result.step == "variant 1" and result.reasons == []
    again = tmp_path / "again.png"
    assert cli.main(["regenerate", in_env["hires"], "--save", str(again)]) == 0
    assert "bit-identical (hi-res, " in capsys.readouterr().out
    assert again.read_bytes() == store.get_bytes(in_env["hires"])  # PNG encoding is stable too
    assert cli.main(["regenerate", in_env["clip"], "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["identical"] and data["step"] == "clip (animatic)"
    assert cli.main(["regenerate", in_env["film"]]) == 2  # an edit: one line, not a traceback
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "this one was made by EditJob" in err


def test_regenerate_names_the_weight_whose_hash_differs(
    in_env: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reelflow.imaging.tiny import build_tiny_lora

    lora = in_env["root"] / "loras" / "ink.safetensors"
    saved = lora.read_bytes()
    try:
        other = build_tiny_lora(in_env["root"] / "tiny-sd", tmp_path / "other.safetensors", seed=9)
        lora.write_bytes(other.read_bytes())
        assert cli.main(["regenerate", in_env["variants"][0]]) == 1
        out = capsys.readouterr().out
        assert "differs (variant 0): max pixel difference" in out and "PSNR" in out
        assert "because lora ink: sha256" in out and "in the job" in out
        lora.unlink()
        assert cli.main(["regenerate", in_env["variants"][0]]) == 1
        assert "weights missing here: lora ink" in capsys.readouterr().err
    finally:
        lora.write_bytes(saved)


def test_lineage_text_names_the_characters_an_image_was_made_with() -> None:
    from reelflow.render.lineage import LineageTree, Node

    image = Node(key="projects/p/shots/a/images/x-v0.png", kind="image", step="variant",
                 details={"prompt": "a car", "characters": {"lin": "3f2a9c1d0e4b5a6c7d8e"}})
    film = Node(key="projects/p/edits/f.mp4", kind="edit", parents=[image])
    text = render_text(LineageTree(root=film))
    assert "characters: lin (version 3f2a9c1d0e4b)" in text
