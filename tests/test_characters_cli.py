"""`reelflow characters add/list/show` as a subprocess against the real S3 test server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from reelflow.storyboard import LoraRef
from reelflow.storyboard.characters import get_character, list_characters

ROOT = Path(__file__).resolve().parents[1]


def cli_env(settings: S3Settings, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFLOW_")}
    env.update({
        "REELFLOW_HOME": str(home),  # no stack file there: only the variables below count
        "REELFLOW_S3_ENDPOINT": settings.endpoint,
        "REELFLOW_S3_ACCESS_KEY": settings.access_key,
        "REELFLOW_S3_SECRET_KEY": settings.secret_key.get_secret_value(),
        "REELFLOW_S3_BUCKET": settings.bucket,
    })
    return env


def reelflow(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env | {"PYTHONPATH": str(ROOT)}, cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def png(path: Path, colour: tuple[int, int, int]) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_characters_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    env = cli_env(store.settings, tmp_path / "home")
    front = png(tmp_path / "front.png", (255, 220, 0))

    added = reelflow(env, "characters", "add", "su7", "--description", "yellow sports car",
                     "--trigger", "su7ultra", "--trigger", "fast", "--lora",
                     "loras/SU7 Body.safetensors", "--lora-weight", "0.8", str(front), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "saved su7: 1 reference image, lora su7-body (0.8)"
    record = get_character(store, "su7")  # read back through the library, not the CLI
    assert record.description == "yellow sports car"
    assert record.trigger_words == ["su7ultra", "fast"]
    assert record.lora == LoraRef(name="su7-body", path="loras/SU7 Body.safetensors",
                                  weight=0.8, role="subject")
    assert record.reference_images == ["characters/su7/front.png"]
    assert store.get_bytes("characters/su7/front.png") == front.read_bytes()

    assert reelflow(env, "characters", "add", "mei", "--description", "woman in a red coat",
                    cwd=tmp_path).returncode == 0
    listed = reelflow(env, "characters", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["mei", "su7"]
    assert "triggers su7ultra, fast" in lines[1] and "lora su7-body" in lines[1]
    assert [c.name for c in list_characters(store)] == ["mei", "su7"]

    shown = reelflow(env, "characters", "show", "su7", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == record.model_dump(mode="json")  # `#` lines: comments
    assert shown.stdout.splitlines()[-1] == f"# {store.uri('characters/su7/front.png')}"


def test_bad_input_is_one_line_and_exit_2(store: ArtifactStore, tmp_path: Path) -> None:
    env = cli_env(store.settings, tmp_path / "home")
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    cases = {
        ("Bad Name",): "reelflow: invalid character name 'Bad Name': "
                       "use lowercase letters, digits and dashes",
        ("ok", str(notes)): "reelflow: reference image 'notes.png' is not a readable image",
        ("ok", str(tmp_path / "missing.png")): "reelflow: no such image file:",
        ("ok", "--lora", "x.safetensors", "--lora-weight", "9"):
            "reelflow: invalid lora weight 9.0: Input should be less than or equal to 4",
        ("ok", "--lora-weight", "0.5"): "reelflow: --lora-weight needs --lora",
    }
    for extra, message in cases.items():
        result = reelflow(env, "characters", "add", *extra, "--description", "d", cwd=tmp_path)
        assert result.returncode == 2, (extra, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(message), result.stderr
    assert store.list("characters/") == []  # nothing was written by any of them

    shown = reelflow(env, "characters", "show", "ghost", cwd=tmp_path)
    assert shown.returncode == 1
    assert shown.stderr.strip() == ("reelflow: no character 'ghost' in the library "
                                    "(characters/ghost/character.json)")


def test_without_s3_settings_the_error_says_how_to_configure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFLOW_")}
    env["REELFLOW_HOME"] = str(tmp_path / "home")
    result = reelflow(env, "characters", "list", cwd=tmp_path)
    assert result.returncode == 2  # a configuration to fix (ConfigError), like bad input
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("reelflow: no S3 configured: set REELFLOW_S3_ENDPOINT")
