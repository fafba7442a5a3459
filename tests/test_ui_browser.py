"""The Prefect UI as a director uses it, in headless Chromium (Debian's `chromium`, driven by
the `playwright` package; no browser is downloaded). A deployed run suspends at the storyboard
gate; the director opens it, fills the approval form and submits; the run moves on to the images
gate, whose contact sheets load in the browser, and there picks a take for one shot from the
form's dropdown and rejects the other with notes; only that shot is drawn again. Screenshots of
the forms and of the finished run's artifacts go to the test's temporary folder;
`REELFLOW_SCREENSHOTS=docs` (`make screenshots`) writes them to the tracked docs/ui-*.png
instead, on purpose.
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


def _shot_field(dialog: Any, title: str) -> Any:
    """One shot's part of the form: the property whose own label is the shot's title."""
    label = dialog.get_by_text(f"{title} (Optional)", exact=True)
    return label.locator(
        "xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '),"
        " ' schema-form-property ')][1]"
    )


def _artifact_keys(run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return [a.key for a in artifacts if a.key]


def _choose(page: Any, field: Any, label: str) -> None:
    """Pick the option starting with ``label`` from the field's dropdown, as a person does:
    open Prefect's select (a click on it; or, where the click does not open it, the down arrow
    on the focused control) and click the option; with the list open and no click landing, the
    arrow keys and Enter."""
    control = field.locator(".p-select-button__control")
    value = field.locator(".p-select-button__value")
    options = page.locator(".p-select-option, [role=option]").filter(has_text=label)
    for attempt in range(4):
        if attempt % 2 == 0:
            control.click()
        else:
            control.focus()
            page.keyboard.press("ArrowDown")
        try:
            options.first.wait_for(state="visible", timeout=5_000)
        except Exception:  # noqa: BLE001 - the list did not open: the other way
            continue
        try:
            options.first.click(timeout=5_000)
        except Exception:  # noqa: BLE001 - covered: choose with the keyboard
            for _ in range(8):
                if value.inner_text().startswith(label):
                    break
                page.keyboard.press("ArrowDown")
                page.keyboard.press("Enter")
        if value.inner_text().startswith(label):
            return
    raise AssertionError(f"could not choose {label!r}: the field shows {value.inner_text()!r}")


def _submit(page: Any, url: str, run_id: Any, fill: Callable[[Any], None],
            screenshot: Path | None = None) -> Any:
    """Open the run's resume form, fill it and submit; the resume request's response.
    SQLite under load can answer 503 "Service Unavailable": the form is filled again."""
    for attempt in range(3):
        if attempt:
            time.sleep(3)
        dialog = _open_resume_form(page, url)
        fill(dialog)
        if screenshot is not None and not attempt:
            dialog.screenshot(path=str(screenshot))
        with page.expect_response(
            lambda r: r.url.endswith(f"/flow_runs/{run_id}/resume") and r.request.method == "POST"
        ) as response:
            dialog.get_by_role("button", name="Submit").click()
        if response.value.status != 503:
            break
    assert response.value.status < 300, response.value.text()
    return response.value


def test_director_approves_in_the_ui_and_the_run_moves_on(
    ops: OpsStack, page: Any, s3_settings: S3Settings, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    from flows.reviewer import approve_run
    from tests.support.deployed import task_states

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

    # the storyboard gate: the review table and the estimate are the form's description (a
    # fresh server: no history, so the declared rule, and it says so); the fields are typed
    dialog = _open_resume_form(page, url)
    text = dialog.inner_text()
    assert "Ops test" in text and "a yellow car on a snowy road" in text
    assert "Estimate: images, clips and edit" in text and "no history for profile test" in text
    dialog.get_by_role("button", name="Close").click()

    def reviewer(dialog: Any) -> None:
        field = dialog.locator(".schema-form-property").filter(has_text="Reviewer (Optional)")
        field.locator("textarea").first.fill("ui-director")

    response = _submit(page, url, run_id, reviewer, shots / "ui-approval-form.png")
    assert response.request.post_data_json["run_input"]["reviewer"] == "ui-director"

    # the run moved on: resumed, re-ran from the top, and waits at the images gate
    wait_for_gate(run_id, "images-1", ops)
    dialog = _open_resume_form(page, url)
    assert "Estimate of what is left (clips, edit)" in dialog.inner_text()
    sheets = dialog.locator("img")
    assert sheets.count() == 2  # one contact sheet per shot
    sheets.last.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=dialog] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )  # the presigned review images are reachable from the browser
    dialog.get_by_role("button", name="Close").click()

    # the director picks take #1 of shot a from its dropdown and rejects shot b with notes:
    # the form's own controls (a select, a text box), no JSON typed
    def pick_and_reject(dialog: Any) -> None:
        reviewer(dialog)
        shot_a = _shot_field(dialog, "a: a yellow car on a snowy road")
        _choose(page, shot_a, "#1 ·")
        shot_b = _shot_field(dialog, "b: the car at the summit")
        shot_b.locator("textarea").first.fill("warmer light")

    response = _submit(page, url, run_id, pick_and_reject, shots / "ui-images-gate.png")
    answer = response.request.post_data_json["run_input"]
    assert answer["a"]["pick"].startswith("#1 ") and answer["a"]["notes"] == ""
    assert answer["b"]["notes"] == "warmer light"
    assert "picks" not in answer and "reject" not in answer  # fields of the form, not JSON

    # only shot b is drawn again (round 2); a keeps the take picked in the UI
    wait_for_gate(run_id, "images-2", ops)
    assert _off_loop(approve_run, str(run_id), reviewer="cli") == "images"
    wait_for_gate(run_id, "clips-1", ops)
    assert _off_loop(approve_run, str(run_id), reviewer="cli") == "clips"
    run = wait_for_state(run_id, {"Completed"}, ops, timeout=300)

    page.goto(url, wait_until="networkidle")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("final", exact=True).first.wait_for()  # the film's review, on the page
    body = page.inner_text("body")
    assert {"storyboard-review", "images-review", "clips-review", "final"} <= set(
        _off_loop(_artifact_keys, run_id))  # every gate's review material, through the API
    assert "Completed" in body
    page.screenshot(path=str(shots / "ui-run-artifacts.png"), full_page=True)

    states = _off_loop(task_states, run_id)
    assert states["variants-b"].count("Completed") == 2, states  # round 1, and b again
    assert states["variants-a"].count("Completed") == 1, states  # a: never regenerated
    result = _off_loop(run.state.result)
    manifest = ArtifactStore(s3_settings.with_bucket(BUCKET)).get_json(result.manifest_key)
    assert [a["reviewer"] for a in manifest["approvals"]] == [
        "ui-director", "ui-director", "cli", "cli"]
    images = manifest["approvals"][1]["decision"]
    assert images["picks"]["a"] == 1 and images["reject"] == {"b": "warmer light"}
    # the chosen still is take #1 hi-res fixed: not the fix of take #0 an unpicked run keeps
    assert manifest["chosen_images"]["a"] != manifest["variants"]["a"][0]
    for name in ("ui-approval-form.png", "ui-images-gate.png", "ui-run-artifacts.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
