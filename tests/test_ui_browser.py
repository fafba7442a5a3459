"""The Prefect UI as a director uses it, in headless Chromium (Debian's `chromium`, driven by
the `playwright` package; no browser is downloaded). A deployed run suspends at the storyboard
gate; the director opens it, fills the approval form and submits; the run moves on to the images
gate, whose contact sheets load in the browser. Screenshots of the forms and of the finished
run's artifacts go to the test's temporary folder; `REELFLOW_SCREENSHOTS=docs` (`make
screenshots`) writes them to the tracked docs/ui-*.png instead, on purpose.
"""

from __future__ import annotations

import contextvars
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.boards import board
from tests.support.deployed import ROOT, OpsStack, ops_stack, wait_for_gate, wait_for_state

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOTS_ENV = "REELFLOW_SCREENSHOTS"  # a folder (relative to the checkout) to refresh
BUCKET = "ui-film"

pytestmark = [
    pytest.mark.flows,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)"
    ),
]


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, s3_settings: S3Settings) -> Iterator[OpsStack]:
    home = tmp_path_factory.mktemp("ui")
    with ops_stack(home, s3_settings, bucket=BUCKET, pools=("cpu",)) as stack:
        yield stack


@pytest.fixture(scope="module")
def page(ops: OpsStack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            new_page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # The stack's server requires its auth string; the UI keeps what a user types on its
            # login page in localStorage `prefect-password` (base64), so log in the same way.
            auth = ops.env.get("PREFECT_API_AUTH_STRING")
            if auth:
                new_page.add_init_script(
                    f"localStorage.setItem('prefect-password', btoa({json.dumps(auth)}))")
            yield new_page
        finally:
            browser.close()


def _off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call Prefect from a plain thread: Playwright's sync API keeps an event loop running in this
    one, and Prefect's dual sync/async functions would hand back coroutines here."""
    context = contextvars.copy_context()  # the Prefect settings (API URL) live in context vars
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, fn, *args, **kwargs).result()


def _open_resume_form(page: Any, url: str) -> Any:
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name="Resume").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Submit").wait_for()
    return dialog


def test_director_approves_in_the_ui_and_the_run_moves_on(
    ops: OpsStack, page: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    from flows.reviewer import approve_run

    shots = ROOT / os.environ[SCREENSHOTS_ENV] if os.environ.get(SCREENSHOTS_ENV) else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    run_id = _off_loop(
        run_deployment,
        "produce-video/produce-video",
        parameters={"storyboard": board("ui-film"), "approval": "manual", "profile": "test"},
        timeout=0,
    ).id
    wait_for_gate(run_id, "storyboard-1", ops)
    url = f"{ops.ui_url}/runs/flow-run/{run_id}"

    # the storyboard gate: the review table is the form's description; the fields are typed
    dialog = _open_resume_form(page, url)
    assert "Ops test" in dialog.inner_text()
    assert "a yellow car on a snowy road" in dialog.inner_text()
    for attempt in range(3):  # SQLite under load can answer 503 "Service Unavailable": retry
        if attempt:
            time.sleep(3)
            dialog = _open_resume_form(page, url)
        reviewer = dialog.locator(".schema-form-property").filter(has_text="Reviewer (Optional)")
        reviewer.locator("textarea").fill("ui-director")
        if not attempt:
            dialog.screenshot(path=str(shots / "ui-approval-form.png"))
        with page.expect_response(
            lambda r: r.url.endswith(f"/flow_runs/{run_id}/resume") and r.request.method == "POST"
        ) as response:
            dialog.get_by_role("button", name="Submit").click()
        if response.value.status != 503:
            break
    assert response.value.status < 300, response.value.text()
    assert response.value.request.post_data_json["run_input"]["reviewer"] == "ui-director"

    # the run moved on: resumed, re-ran from the top, and waits at the images gate
    wait_for_gate(run_id, "images-1", ops)
    dialog = _open_resume_form(page, url)
    assert "Pick a variant per shot" in dialog.inner_text()
    sheets = dialog.locator("img")
    assert sheets.count() == 2  # one contact sheet per shot
    sheets.last.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=dialog] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )  # the presigned review images are reachable from the browser
    dialog.screenshot(path=str(shots / "ui-images-gate.png"))
    Path("/tmp/review-ui-images.html").write_text(dialog.inner_html())
    dialog.screenshot(path="/tmp/review-ui-images.png")
    dialog.get_by_role("button", name="Close").click()

    assert _off_loop(approve_run, str(run_id), reviewer="cli") == "images"
    wait_for_gate(run_id, "clips-1", ops)
    assert _off_loop(approve_run, str(run_id), reviewer="cli") == "clips"
    run = wait_for_state(run_id, {"Completed"}, ops, timeout=300)

    page.goto(url, wait_until="networkidle")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("final", exact=True).first.wait_for()
    body = page.inner_text("body")
    for key in ("storyboard-review", "images-review", "clips-review", "final"):
        assert key in body, key
    assert "Completed" in body
    page.screenshot(path=str(shots / "ui-run-artifacts.png"), full_page=True)

    result = _off_loop(run.state.result)
    manifest = ArtifactStore(s3_settings.with_bucket(BUCKET)).get_json(result.manifest_key)
    assert [a["reviewer"] for a in manifest["approvals"]] == ["ui-director", "cli", "cli"]
    for name in ("ui-approval-form.png", "ui-images-gate.png", "ui-run-artifacts.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
