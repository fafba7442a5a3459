"""Run notifications: a film delivered (its keys and links) and a run that failed (why, in one
line), posted through the same Custom Webhook block as the gate notifications
(deployments/automations.py, saved by `reelflow deploy` when a webhook URL is configured).

They are produce-video's state hooks (`on_completion`, `on_failure`, `on_crashed`), so a run
posts once when it ends, wherever it ran (locally or on a worker). No block saved: no
notification. A webhook that does not answer is logged, never a reason for the run to fail.
The message names object keys and s3:// URIs, never a presigned URL or a credential.
"""

from __future__ import annotations

import logging
from typing import Any

#: the Custom Webhook block the gate notifications use (deployments/config.py NotificationSpec)
BLOCK = "reelflow-gates"

logger = logging.getLogger("reelflow.notify")


def _post(subject: str, body: str) -> bool:
    """Send one message through the block; False when there is no block or it fails."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    try:
        block = CustomWebhookNotificationBlock.load(BLOCK, _sync=True)
    except (ValueError, KeyError):  # not saved: notifications are off
        return False
    try:
        block.notify(body, subject, _sync=True)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the run
        logger.warning("could not post the notification '%s': %s: %s", subject,
                       type(exc).__name__, exc)
        return False
    return True


def _run_link(flow_run: Any) -> str:
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"\nOpen it: {ui.rstrip('/')}/runs/flow-run/{flow_run.id}" if ui else ""


def delivered_message(flow_run: Any, result: Any) -> tuple[str, str]:
    """Subject and body of 'a film was delivered': the film, cover and manifest (key and
    s3:// URI) and each version's key."""
    lines = [f"Run {flow_run.name} delivered {result.project}.",
             f"film: {result.film_uri}", f"cover: {result.cover_uri}",
             f"manifest: {result.manifest_uri}"]
    lines += [f"version {name}: {key}" for name, key in sorted(result.versions.items())]
    return f"reelflow: {result.project} delivered", "\n".join(lines) + _run_link(flow_run)


def failed_message(flow_run: Any, state: Any) -> tuple[str, str]:
    """Subject and body of 'a run failed': its state and the one-line reason."""
    message = (state.message or state.name or "").strip()
    reason = message.splitlines()[0] if message else "(no reason given)"
    project = (flow_run.labels or {}).get("reelflow.project")
    of = f" ({project})" if project else ""
    return (f"reelflow: {flow_run.name} {state.name.lower()}",
            f"Run {flow_run.name}{of} ended {state.name}: {reason}" + _run_link(flow_run))


def on_delivered(flow: Any, flow_run: Any, state: Any) -> None:
    """`on_completion` hook: the film is in the bucket; say where."""
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - unreadable result: say the run completed
        logger.warning("delivered, but its result could not be read: %s", exc)
        return
    if not hasattr(result, "film_uri"):
        return
    _post(*delivered_message(flow_run, result))


def on_failed(flow: Any, flow_run: Any, state: Any) -> None:
    """`on_failure` / `on_crashed` hook: the run ended without a film; say why in one line."""
    _post(*failed_message(flow_run, state))
