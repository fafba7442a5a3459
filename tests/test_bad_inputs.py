"""Bad input, table-driven, through the real CLI entry point: each case exits 2 with one line
naming the field/option, before any work, and writes nothing to the bucket.

Storyboards are written into a project folder beside a real `music.wav` and `ref.png`; `render`
runs with REELFLOW_S3_* pointing at a real (SeaweedFS) bucket that must still be empty after
every case. `cli.main.main([...])` runs in-process: the same code path as the command.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings

BASE = """\
title: t
project: p
shots:
  - {id: a, description: first, duration: 2}
  - {id: b, description: second, duration: 2}
"""


def board(*extra: str, shots: str | None = None, head: str = "") -> str:
    """The base storyboard with top-level lines added (and its shots replaced)."""
    text = "title: t\nproject: p\n" + head + "".join(line + "\n" for line in extra)
    return text + "shots:\n" + (shots if shots is not None else
                                "  - {id: a, description: first, duration: 2}\n"
                                "  - {id: b, description: second, duration: 2}\n")


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)

# (id, storyboard text or bytes, what the one line must name)
STORYBOARDS: list[tuple[str, str | bytes, str]] = [
    ("alias-bomb", BOMB, "expands to more than"),
    ("alias-bomb-shots", "s: &s {id: a, description: d, duration: 1}\n" + board(
        shots="  [" + ", ".join(["*s"] * 40000) + "]\n"), "expands to more than"),
    ("recursive-alias", "a: &a [*a]\n", "recursive alias"),
    ("deep-nesting", "a: " + "[" * 3000 + "]" * 3000 + "\n", "nest"),
    ("too-large", BASE + "# " + "x" * (1 << 20) + "\n", "too large"),
    ("not-utf8", b"title: t\xff\nproject: p\n", "(encoding)"),
    ("latin1", "title: caf\u00e9\nproject: p\n".encode("latin-1"), "not UTF-8"),
    ("duplicate-key", board("title: again"), "duplicate key"),
    ("duplicate-key-in-shot", board(shots="  - {id: a, description: d, duration: 2, "
                                          "duration: 3}\n"), "duplicate key"),
    ("duplicate-key-json", '{"title": "t", "project": "p", "project": "q", "shots": []}',
     "duplicate key"),
    ("duration-true", board(shots="  - {id: a, description: d, duration: true}\n"),
     "shots[0].duration: must be a number, not true/false"),
    ("duration-string", board(shots="  - {id: a, description: d, duration: '2'}\n"),
     "shots[0].duration: must be a number"),
    ("steps-bool", board("style: {steps: yes}"), "style.steps: must be an integer"),
    ("seed-float", board(shots="  - {id: a, description: d, duration: 2, seed: 1.5}\n"),
     "shots[0].seed"),
    ("seed-negative", board(shots="  - {id: a, description: d, duration: 2, seed: -1}\n"),
     "shots[0].seed"),
    ("fps-bool", board("fps: true"), "fps: must be an integer"),
    ("too-many-shots", board(shots="".join(
        f"  - {{id: s{i}, description: d, duration: 1}}\n" for i in range(501))),
     "the limit is 500 shots"),
    ("too-long", board(shots="".join(
        f"  - {{id: s{i}, description: d, duration: 600}}\n" for i in range(7))),
     "the limit is 3600 s"),
    ("shot-over-600", board(shots="  - {id: a, description: d, duration: 601}\n"),
     "shots[0].duration: must be <= 600"),
    ("zero-frame-shot", board(shots="  - {id: a, description: d, duration: 2}\n"
                                    "  - {id: b, description: d, duration: 0.001}\n"),
     "shots[1].duration: 0.001 s is shorter than one frame at 24 fps"),
    ("duration-nan", board(shots="  - {id: a, description: d, duration: .nan}\n"),
     "shots[0].duration"),
    ("duration-zero", board(shots="  - {id: a, description: d, duration: 0}\n"),
     "shots[0].duration: must be > 0"),
    ("width-huge", board("width: 100000"), "width: must be <= 7680"),
    ("width-odd", board("width: 1279"), "width: must be even"),
    ("fps-zero", board("fps: 0"), "fps: must be >= 1"),
    ("fps-huge", board("fps: 100000"), "fps: must be <= 120"),
    ("aspect-mismatch", board('aspect: "9:16"', "width: 1280", "height: 720"),
     "aspect: 9:16 does not match width x height 1280x720"),
    ("aspect-mismatch-square", board('aspect: "1:1"'), "aspect: 1:1 does not match"),
    ("aspect-unknown", board('aspect: "5:4"'), "aspect"),
    ("unknown-character", board(shots="  - {id: a, description: d, duration: 2}\n"
                                      "  - {id: b, description: d, duration: 2, "
                                      "characters: [ghost]}\n"),
     ":5 shots[1].characters[0]: unknown character 'ghost'"),
    ("frame-ref-later", board(shots="  - {id: a, description: d, duration: 2, "
                                    "first_frame: {shot: b}}\n"
                                    "  - {id: b, description: d, duration: 2}\n"),
     ":4 shots[0].first_frame.shot: shot 'b' must come earlier"),
    ("duplicate-shot-id", board(shots="  - {id: a, description: d, duration: 2}\n"
                                      "  - {id: a, description: e, duration: 2}\n"),
     ":5 shots[1].id: duplicate shot id 'a'"),
    ("transition-too-long", board(shots="  - {id: a, description: d, duration: 1}\n"
                                        "  - {id: b, description: d, duration: 2, "
                                        "transition_in: crossfade, transition_duration: 1}\n"),
     ":5 shots[1].transition_duration: must be shorter"),
    ("unknown-key", board(shots="  - {id: a, description: d, duration: 2, durration: 2}\n"),
     "shots[0].durration: unknown key"),
    ("project-escape", BASE.replace("project: p", "project: ../etc"), "project: must be a slug"),
    ("shot-id-upper", board(shots="  - {id: A, description: d, duration: 2}\n"), "shots[0].id"),
    ("empty-description", board(shots="  - {id: a, description: '', duration: 2}\n"),
     "shots[0].description"),
    ("caption-number", board(shots="  - {id: a, description: d, duration: 2, "
                                   "caption: {zh: 5}}\n"), "shots[0].caption.zh"),
    ("variants-zero", board("style: {variants: 0}"), "style.variants: must be >= 1"),
    ("lora-weight", board("style: {loras: [{name: x, path: x.safetensors, weight: 10}]}"),
     "style.loras[0].weight: must be <= 4"),
    ("bpm-zero", board("music: {path: music.wav, bpm: 0}"), "music.bpm: must be > 0"),
    ("music-file-and-prompt", board("music: {path: music.wav, prompt: calm piano}"),
     ":3 music.prompt: give a music file (path) or a prompt to generate the bed from, not both"),
    ("music-neither", board("music: {snap_cuts: false}"),
     ":3 music.path: give a music file (path) or a prompt"),
    ("music-seed-with-file", board("music: {path: music.wav, seed: 3}"),
     ":3 music.seed: only a generated bed (prompt) takes it"),
    ("music-prompt-empty", board("music: {prompt: ''}"), "music.prompt"),
    ("music-prompt-blank", board("music: {prompt: '  '}"), ":3 music.prompt: is blank"),
    ("inpaint-box", board(shots="  - {id: a, description: d, duration: 2, inpaint: "
                                "[{box: [0.8, 0.2, 0.1, 0.9], prompt: p}]}\n"),
     "shots[0].inpaint[0].box"),
    ("empty-file", "", "(root)"),
    ("list-root", "- a\n- b\n", "(root)"),
    ("syntax", "title: t\nshots: [\n  - {", "(syntax)"),
    ("no-shots", "title: t\nproject: p\nshots: []\n", "shots"),
    # confinement and existence: the renderer's own files never reach the bucket
    ("music-etc-hostname", board("music: {path: /etc/hostname}"),
     ":3 music.path: '/etc/hostname' is outside the storyboard's folder"),
    ("music-dotdot", board("music: {path: ../../../../etc/passwd}"), "music.path"),
    ("music-missing", board("music: {path: missing.wav}"), "music.path: 'missing.wav': no such"),
    ("music-home", board("music: {path: ~/.ssh/id_rsa}"), "music.path"),
    ("music-uri", board("music: {path: 's3://reelflow/projects/p/x.wav'}"), "music.path"),
    ("reference-dotdot", board(shots="  - {id: a, description: d, duration: 2, "
                                     "reference: {image: ../../x}}\n"),
     ":4 shots[0].reference.image: '../../x' is outside"),
    ("reference-etc", board(shots="  - {id: a, description: d, duration: 2}\n"
                                  "  - {id: b, description: d, duration: 2, "
                                  "reference: {image: /etc/hostname}}\n"),
     ":5 shots[1].reference.image"),
    ("reference-missing", board(shots="  - {id: a, description: d, duration: 2, "
                                      "reference: {image: nope.png}}\n"),
     "shots[0].reference.image: 'nope.png': no such file"),
    ("reference-symlink-out", board(shots="  - {id: a, description: d, duration: 2, "
                                          "reference: {image: link.png}}\n"),
     "a symlink that points outside"),
    ("reference-dir", board(shots="  - {id: a, description: d, duration: 2, "
                                  "reference: {image: sub}}\n"), "no such file"),
    ("lora-absolute", board("style: {loras: [{name: x, path: /etc/passwd}]}"),
     "style.loras[0].path: '/etc/passwd' is outside"),
    ("lora-dotdot", board(shots="  - {id: a, description: d, duration: 2, "
                                "loras: [{name: x, path: ../x.safetensors}]}\n"),
     "shots[0].loras[0].path"),
    ("lora-models-escape", board("style: {loras: [{name: x, path: '@models/../../etc/x'}]}"),
     "leaves the models folder"),
    ("character-lora", board("characters: [{name: c, description: d, "
                             "lora: {name: c, path: /root/c.safetensors}}]"),
     "characters[0].lora.path"),
    ("model-path", board("style: {model: /etc/model.safetensors}"), "style.model"),
    ("model-dotdot", board("style: {model: ../../models/x}"), "style.model"),
]


@pytest.fixture(scope="module")
def bucket(s3_settings: S3Settings) -> Iterator[ArtifactStore]:
    """One empty bucket for the module, and REELFLOW_S3_* pointing at it."""
    store = ArtifactStore(s3_settings.with_bucket(f"bad-{uuid.uuid4().hex[:12]}"))
    store.ensure_bucket()
    env = {
        "REELFLOW_S3_ENDPOINT": store.settings.endpoint,
        "REELFLOW_S3_ACCESS_KEY": store.settings.access_key,
        "REELFLOW_S3_SECRET_KEY": store.settings.secret_key.get_secret_value(),
        "REELFLOW_S3_BUCKET": store.bucket,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield store
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "film"
    folder.mkdir()
    (folder / "music.wav").write_bytes(b"RIFF0000WAVE")
    (folder / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "sub").mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    (folder / "link.png").symlink_to(outside)
    return folder


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(argv)  # usage errors too: main() returns 2, it never raises SystemExit
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def assert_refused(code: int, lines: list[str], needle: str) -> None:
    assert code == 2, (code, lines)
    assert len(lines) == 1, lines
    assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in lines[0]


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize(("name", "text", "needle"), STORYBOARDS, ids=[c[0] for c in STORYBOARDS])
def test_bad_storyboard(
    bucket: ArtifactStore, project: Path, capsys: pytest.CaptureFixture[str],
    command: str, name: str, text: str | bytes, needle: str,
) -> None:
    path = project / "board.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = [command, str(path)] + (["--auto-approve"] if command == "render" else [])
    code, lines = run_cli(argv, capsys)
    assert_refused(code, lines, needle)
    if not needle.startswith(":"):
        assert lines[0].startswith("board.yaml"), lines[0]
    assert bucket.list("") == []


def test_alias_bomb_is_refused_quickly(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    path = project / "bomb.yaml"
    path.write_text(BOMB)
    start = time.perf_counter()
    code, lines = run_cli(["validate", str(path)], capsys)
    assert code == 2 and "expands" in lines[0]
    assert time.perf_counter() - start < 2.0


def test_good_storyboard_with_confined_files_validates(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path = project / "board.yaml"
    path.write_text(board("music: {path: music.wav}", 'aspect: "9:16"', "width: 720",
                          "height: 1280",
                          shots="  - {id: a, description: 第一个镜头, duration: 2, "
                                "reference: {image: ref.png}}\n"
                                "  - {id: b, description: 第二个, duration: 0.05}\n"))
    assert main(["validate", str(path)]) == 0
    # an allow-listed folder makes an outside file acceptable
    outside = tmp_path / "shared"
    outside.mkdir()
    (outside / "theme.wav").write_bytes(b"RIFF")
    path.write_text(board(f"music: {{path: {outside / 'theme.wav'}}}"))
    code, lines = run_cli(["validate", str(path)], capsys)
    assert code == 2 and "outside" in lines[0]
    monkeypatch.setenv("REELFLOW_ALLOWED_DIRS", str(outside))
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize("command", ["validate", "render"])
def test_a_generated_bed_needs_its_model_folder(
    bucket: ArtifactStore, project: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str,
) -> None:
    """`music.model` names a folder in the models folder: a missing one, or a path outside
    it, is one line naming the field; the tiny model's name passes (it is built on first use)
    and the bucket stays empty."""
    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path / "models"))
    path = project / "board.yaml"
    extra = ["--auto-approve"] if command == "render" else []
    for model, needle in (("'@models/nope'", "music.model '@models/nope': no text-to-music "
                                              "model folder at"),
                          ("/etc/models/x", "music.model '/etc/models/x': name a folder in "
                                            "the models folder")):
        path.write_text(board(f"music: {{prompt: 雪山上的钢琴, model: {model}}}"))
        code, lines = run_cli([command, str(path), *extra], capsys)
        assert_refused(code, lines, needle)
    path.write_text(board("music: {prompt: 雪山上的钢琴, model: '@models/tiny-stable-audio'}"))
    if command == "validate":
        assert main(["validate", str(path)]) == 0
    assert bucket.list("") == []


EXPORTS: list[tuple[str, str]] = [
    ("16:9,fps=0", "fps"),
    ("16:9,fps=-1", "fps"),
    ("16:9,fps=100000", "fps: Input should be less than or equal to 120"),
    ("16:9,fps=abc", "fps must be a whole number"),
    ("16:9,fps=29.97", "fps"),
    ("16:9,foo=1", "unknown option 'foo'"),
    ("16:9,aspect=9:16", "unknown option 'aspect'"),
    ("16:9,size=-2x-2", "size must be WIDTHxHEIGHT"),
    ("16:9,size=100000x100000", "size: 100000x100000: each side must be 64..7680"),
    ("16:9,size=1281x721", "must be even"),
    ("16:9,size=32x18", "each side must be 64"),
    ("16:9,size=abc", "size must be WIDTHxHEIGHT"),
    ("16:9,size=1920", "size must be WIDTHxHEIGHT"),
    ("9:16,size=1920x1080", "is not 9:16"),
    ("16:9,size=3840x3840", "is not 16:9"),
    ("16:9,codec=vp9", "codec"),
    ("16:9,captions=maybe", "captions"),
    ("16:9,cut=medium", "cut"),
    ("16:9,denoise=x", "denoise"),
    ("4:3", "aspect"),
    ("", "aspect"),
    ("16:9,fps", "expected NAME=VALUE"),
    ("16:9,=3", "expected NAME=VALUE"),
    ("16:9,fps=30,fps=60", "option fps given twice"),
]


@pytest.mark.parametrize(("spec", "needle"), EXPORTS, ids=[e[0] or "empty" for e in EXPORTS])
def test_bad_export_option(
    bucket: ArtifactStore, project: Path, capsys: pytest.CaptureFixture[str],
    spec: str, needle: str,
) -> None:
    path = project / "board.yaml"
    path.write_text(BASE)
    code, lines = run_cli(["render", str(path), "--export", spec], capsys)
    assert_refused(code, lines, needle)
    assert "--export" in lines[0]
    assert bucket.list("") == []


def test_good_export_options_parse() -> None:
    from reelflow.render.jobs import parse_export

    assert parse_export("9:16,size=720x1280,fps=60").name == "9x16-h264-60fps-720x1280"
    # 1080x1920 is the 9:16 preset's own size: the same version as no size at all
    assert parse_export("9:16,size=1080x1920,fps=60").name == "9x16-h264-60fps"
    assert parse_export("9:16,size=720p").size == (720, 1280)
    assert parse_export("16:9, codec=h265, captions=soft").codec == "h265"


URIS: list[tuple[str, str]] = [
    ("s3://{bucket}", "no object key"),
    ("s3://{bucket}/", "no object key"),
    ("s3://{bucket}/../x", "'..' segment"),
    ("s3://{bucket}/a//b", "empty"),
    ("s3://{bucket}/./a", "'.'"),
    ("s3://other-bucket/k", "bucket 'other-bucket' is not this store's bucket"),
    ("s3://", "no bucket"),
    ("s3:///key", "no bucket"),
    ("s3://{bucket}/projects/p/missing.yaml", "no such object"),
]


@pytest.mark.parametrize(("uri", "needle"), URIS, ids=[u[0] for u in URIS])
def test_bad_s3_uri(
    bucket: ArtifactStore, capsys: pytest.CaptureFixture[str], uri: str, needle: str
) -> None:
    code, lines = run_cli(["render", uri.format(bucket=bucket.bucket)], capsys)
    assert_refused(code, lines, needle)
    assert bucket.list("") == []


def test_bucket_storyboard_may_name_only_its_project_keys(store: ArtifactStore) -> None:
    from reelflow.storyboard import StoryboardError
    from reelflow.storyboard.sources import read_storyboard

    key = "projects/p/incoming/b.yaml"
    uri = f"s3://{store.bucket}/{key}"
    for music, needle in (("/etc/hostname", "may name only objects under projects/p/"),
                          ("../../etc/passwd", "may name only objects under projects/p/"),
                          ("projects/q/inputs/x.wav", "projects/p/"),
                          ("projects/p/inputs/x.wav", "no such object"),
                          (f"s3://{store.bucket}/projects/p/../q/x.wav", "'..'"),
                          ("s3://elsewhere/projects/p/x.wav", "not this store's bucket")):
        store.put_bytes(key, board(f"music: {{path: '{music}'}}").encode())
        with pytest.raises(StoryboardError, match="music.path") as info:
            read_storyboard(uri, store)
        assert needle in str(info.value), str(info.value)
        with pytest.raises(StoryboardError, match="music.path"):  # inline, as the batch passes it
            read_storyboard(board(f"music: {{path: '{music}'}}"), store)
    for lora in ("/etc/passwd", "../../x.safetensors", "~/x.bin", "@models/../x"):
        with pytest.raises(StoryboardError, match="style.loras.0..path.*models folder only"):
            read_storyboard(board(f"style: {{loras: [{{name: x, path: '{lora}'}}]}}"), store)
    read_storyboard(board("style: {loras: [{name: x, path: loras/x.safetensors}]}"), store)
    store.put_bytes("projects/p/inputs/x.wav", b"RIFF")
    for music in ("projects/p/inputs/x.wav", f"s3://{store.bucket}/projects/p/inputs/x.wav"):
        store.put_bytes(key, board(f"music: {{path: '{music}'}}").encode())
        loaded, base_dir = read_storyboard(uri, store)
        assert base_dir is None and loaded.music is not None


def test_render_refuses_a_bucket_storyboard_naming_local_files(
    bucket: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "projects/p/incoming/evil.yaml"
    bucket.put_bytes(key, board("music: {path: /etc/hostname}").encode())
    try:
        code, lines = run_cli(["render", f"s3://{bucket.bucket}/{key}"], capsys)
        assert_refused(code, lines, "music.path: '/etc/hostname': a storyboard from the bucket")
        assert bucket.list("") == [key]
    finally:
        bucket.delete(key)


CLI_OPTIONS: list[tuple[list[str], str]] = [
    (["script", "{brief}", "--versions", "0"], "--versions 0: must be 1..5"),
    (["script", "{brief}", "--versions", "-1"], "--versions -1"),
    (["script", "{brief}", "--versions", "99"], "--versions 99"),
    (["script", "{brief}", "--versions", "x"], "argument --versions: invalid int value"),
    (["render", "{board}", "--profile", "nope"], "nope"),
    (["render", "{board}", "--approval", "yolo"], "argument --approval"),
    (["approve", "some-run", "--pick", "a=x"], "--pick a: expected a whole number, got 'x'"),
    (["approve", "some-run", "--pick", "=1"], "--pick '=1': expected SHOT=VALUE"),
    (["approve", "some-run", "--new-seed", "a=1.5"], "--new-seed a: expected a whole number"),
    (["approve", "some-run", "--speed", "a=fast"], "--speed a: expected a number, got 'fast'"),
    (["approve", "some-run", "--lang", "fr"], "--lang"),
    (["approve", "some-run", "--version", "one"], "argument --version"),
    (["characters", "add", "c", "--description", "d", "--lora-weight", "heavy"],
     "argument --lora-weight"),
    (["worker", "--limit", "many"], "argument --limit"),
    (["up", "--base-port", "abc"], "--base-port: expected a port number"),
    (["up", "--base-port", "80"], "--base-port: expected a port number"),
    (["nope"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "needle"), CLI_OPTIONS, ids=[" ".join(a[:3]) for a, _ in
                                                                CLI_OPTIONS])
def test_bad_cli_option(
    bucket: ArtifactStore, project: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], needle: str,
) -> None:
    (project / "board.yaml").write_text(BASE)
    (project / "brief.yaml").write_text("subjects: [a cat]\nscenes: [a roof]\nshots: 2\n"
                                        "total_seconds: 4\n")
    argv = [a.format(board=project / "board.yaml", brief=project / "brief.yaml") for a in argv]
    code, lines = run_cli(argv, capsys)
    assert_refused(code, lines, needle)
    assert bucket.list("") == []


def test_unexpected_error_is_one_line_and_debug_shows_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    import reelflow.storyboard

    def boom() -> dict:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(reelflow.storyboard, "json_schema", boom)  # `reelflow schema` calls it
    code, lines = run_cli(["schema"], capsys)
    assert code == 1 and len(lines) == 1
    assert "disk on fire" in lines[0] and "--debug" in lines[0]
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["--debug", "schema"])


def _flow_run_count() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(limit=200))


@pytest.mark.parametrize(("argv", "needle"), [
    (["approve", "00000000-0000-4000-8000-000000000000"], "no flow run"),
    (["approve", "00000000-0000-4000-8000-000000000000", "--pick", "a=1"], "no flow run"),
    (["script", "{brief}", "--llm", "no-such-block"], "--llm no-such-block: no LLM endpoint"),
], ids=["approve-unknown", "approve-unknown-pick", "script-llm-missing"])
def test_refused_before_a_flow_run(
    prefect_server: str, bucket: ArtifactStore, project: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    argv: list[str], needle: str,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    (project / "brief.yaml").write_text("subjects: [a cat]\nscenes: [a roof]\nshots: 2\n"
                                        "total_seconds: 4\n")
    before = _flow_run_count()
    code, lines = run_cli([a.format(brief=project / "brief.yaml") for a in argv], capsys)
    assert_refused(code, lines, needle)
    assert _flow_run_count() == before, "no flow run may be left behind for refused input"
    assert bucket.list("") == []


def test_a_bucket_storyboard_renders_only_into_the_project_it_is_stored_under(
    bucket: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Projects are boundaries: a board under projects/a/ that says `project: p` is refused in
    one line before any run exists, and nothing is written under either project."""
    key = "projects/a/storyboards/b.yaml"
    bucket.put_bytes(key, board().encode())
    try:
        code, lines = run_cli(["render", f"s3://{bucket.bucket}/{key}"], capsys)
        assert_refused(code, lines, "project: 'p', but the storyboard is filed under project 'a'")
        assert bucket.list("") == [key]
    finally:
        bucket.delete(key)
