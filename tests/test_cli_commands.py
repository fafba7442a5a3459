"""Every command a user types, run as the installed console script (`reelflow ...`), on the
session's servers where it can: `status` and `down` on a stack of the test's own (S3 only),
`deploy` and `worker` on the session's Prefect server, `render --out --export` of a two-shot
board through the previz profile (no model: seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow import devstack
from reelflow.media.probe import probe
from tests.support.boards import board, write_board
from tests.support.deployed import ROOT
from tests.support.upscaled import (
    UPSCALED_EXPORT,
    check_upscaled_delivery,
    tiny_upscaler,
    with_zh_caption,
)
from tests.support.waiting import wait_until

REELFLOW = Path(sys.executable).parent / "reelflow"  # the console script, as a user runs it


def _reelflow(*args: str, env: dict[str, str], cwd: Path = ROOT,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REELFLOW), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _output(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"


def _checkout_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with this checkout first on the path (its code, not an installed copy)."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}


def _s3_health(done: subprocess.CompletedProcess[str]) -> str:
    """`healthy` or `down`: the second word of status's `s3` line."""
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("s3 ")), None)
    assert line is not None, _output(done)
    return line.split()[1]


@pytest.fixture(scope="module")
def cli_env(film_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The session's S3 (bucket "film") and Prefect server; an empty REELFLOW_HOME (no stack)."""
    home = tmp_path_factory.mktemp("cli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELFLOW_")}
    return {**_checkout_env(env), **film_env, "REELFLOW_HOME": str(home)}


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[devstack.StackConfig]:
    """A stack of this test's own (S3 only): `down` stops it."""
    home = tmp_path / "home"
    try:
        config, _ = devstack.start_on_free_ports(home, start_s3=True, start_prefect=False,
                                                 timeout=60)
        yield config
    finally:
        devstack.down(devstack.StackConfig.load(home))


@pytest.mark.integration
def test_status_then_down_then_status(own_s3: devstack.StackConfig) -> None:
    env = _checkout_env({k: v for k, v in os.environ.items()
                         if not k.startswith(("REELFLOW_", "PREFECT_"))})
    env["REELFLOW_HOME"] = str(own_s3.home)

    up = _reelflow("status", env=env, timeout=60)
    assert _s3_health(up) == "healthy" and "(managed pid" in up.stdout, _output(up)

    pid = devstack.running_pid(own_s3, devstack.S3)
    assert pid is not None
    down = _reelflow("down", env=env, timeout=60)
    assert down.returncode == 0, _output(down)
    assert down.stdout.startswith("stopped: ") and str(pid) in down.stdout, _output(down)
    assert devstack.running_pid(own_s3, devstack.S3) is None

    after = _reelflow("status", env=env, timeout=60)
    assert after.returncode == 1, _output(after)  # not healthy: exit 1
    assert _s3_health(after) == "down", _output(after)


@pytest.mark.flows
def test_render_out_and_export(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Two exports: the first is the delivered film (final.mp4), the other is saved by name.
    The first is upscaled by a learned upscaler (tiny SD x4) to its export's size, its Chinese
    caption drawn after the upscale (tests/support/upscaled.py)."""
    path = write_board(tmp_path, "cli-film.yaml", with_zh_caption(board("cli-film")))
    out = tmp_path / "out"
    # an upscaler that is not on this machine: refused before any run, not after the clips
    missing = _reelflow("render", str(path), "--auto-approve", "--profile", "previz",
                        "--export", UPSCALED_EXPORT, env=cli_env, cwd=tmp_path)
    assert missing.returncode == 2, _output(missing)
    (line,) = missing.stderr.strip().splitlines()
    assert "upscaler @models/tiny-x4: not found at " in line and line.startswith(
        "reelflow: --export 9x16"), line
    from tasks.common import get_store

    assert get_store().bucket == "film"  # the bucket the command writes to (film_env)
    assert not get_store().list("projects/cli-film/"), "something was published"
    tiny_upscaler(Path(cli_env["REELFLOW_MODELS"]))
    done = _reelflow("render", str(path), "--auto-approve", "--profile", "previz",
                     "--out", str(out), "--export", UPSCALED_EXPORT, "--export", "1:1",
                     env=cli_env, cwd=tmp_path)
    assert done.returncode == 0, _output(done)
    assert "film:     s3://film/projects/cli-film/" in done.stdout, _output(done)
    versions = [line.split()[1] for line in done.stdout.splitlines()
                if line.startswith("version:")]
    assert [name[:3] for name in versions] == ["9x1", "1x1"], _output(done)
    square = versions[1]
    folder = out / "cli-film"
    for name in ("final.mp4", "master.mp4", "cover.png", "manifest.json", f"{square}.mp4",
                 f"cover-{square}.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, (
            name, sorted(p.name for p in folder.iterdir()))
    film, other = probe(folder / "final.mp4"), probe(folder / f"{square}.mp4")
    assert film.height > film.width  # the first export: 9:16
    assert other.width == other.height  # the second: 1:1
    assert abs(film.duration - 2.0) <= 0.2  # the storyboard's two 1 s shots
    assert abs(other.duration - film.duration) < 0.1
    manifest = json.loads((folder / "manifest.json").read_text())
    check_upscaled_delivery(folder / "final.mp4", manifest, versions[0], get_store())
    # none asked, and previz delivers the 1:1 at the reframed film's own size: no upscale
    assert manifest["version_upscalers"][square] == "none (the reframed film's own size)"


@pytest.mark.flows
def test_deploy_then_worker(cli_env: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    done = _reelflow("deploy", env=cli_env)
    assert done.returncode == 0, _output(done)
    assert "deployment:    produce-video/produce-video" in done.stdout, _output(done)
    assert f"server:        {cli_env['PREFECT_API_URL']}" in done.stdout, _output(done)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("produce-video/produce-video")
    assert any("fetch_bundle" in str(step) for step in deployment.pull_steps or [])

    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [str(REELFLOW), "worker", "--pool", "cli-test", "--name", "cli-worker"],
            env=cli_env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        def registered() -> bool:
            with get_client(sync_client=True) as client:
                try:
                    workers = client.read_workers_for_work_pool("cli-test")
                except Exception:  # the pool is created by the worker's first poll
                    return False
            return any(w.name == "cli-worker" for w in workers)

        wait_until("the worker to register with the server", registered, timeout=120,
                   detail=lambda: log.read_text(errors="replace")[-3000:])
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
