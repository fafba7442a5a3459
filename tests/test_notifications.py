"""Run notifications through the gates' Custom Webhook block (flows/notify.py): a delivered film
posts its links once, a failed run posts its one-line reason once; a real HTTP receiver on
127.0.0.1 gets them, and no secret is in what it gets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow.store.settings import S3Settings
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.flows

BOARD = """
title: Notified
project: notified-film
width: 160
height: 96
fps: 8
style: {palette: ["#f5c518", "#e8f1f8"]}
shots:
  - {id: a, description: a yellow car on a snowy road, duration: 1.0}
"""


@pytest.fixture
def hook(film_env: dict[str, str]) -> Iterator[WebhookReceiver]:
    """The receiver, and the webhook block `reelflow deploy` saves pointing at it; the block is
    deleted afterwards, so later runs in the session post nothing."""
    from prefect.client.orchestration import get_client

    from deployments.automations import ensure_webhook_block
    from deployments.config import NotificationSpec

    with WebhookReceiver() as receiver:
        block_id = ensure_webhook_block(NotificationSpec(webhook_url=receiver.url))
        try:
            yield receiver
        finally:
            with get_client(sync_client=True) as client:
                client.delete_block_document(block_id)


def test_delivered_and_failed_runs_post_one_notification_each(
    hook: WebhookReceiver, s3_settings: S3Settings, tmp_path: Path
) -> None:
    from flows.produce_video import produce_video

    delivered = produce_video(storyboard=BOARD, approval="auto", profile="previz",
                              return_state=True)
    assert delivered.is_completed(), delivered.message
    result = delivered.result()
    message = hook.wait_for(lambda m: m.get("subject") == "reelflow: notified-film delivered")
    assert [m for m in hook.messages if "delivered" in m.get("subject", "")] == [message]
    assert result.film_uri in message["body"] and result.manifest_uri in message["body"]
    assert result.film_uri.startswith("s3://")

    board = tmp_path / "board.yaml"
    board.write_text(BOARD)
    failed = produce_video(storyboard=str(board), approval="auto", profile="previz",
                           quality_threshold=5, return_state=True)
    assert failed.is_failed()
    message = hook.wait_for(lambda m: m.get("subject", "").endswith(" failed"))
    assert "ended Failed: " in message["body"]
    assert "quality_threshold 5: must be in 0..1" in message["body"]
    assert len(message["body"].splitlines()) <= 2  # the reason in one line (and the UI link)
    time.sleep(1.0)  # a second message, were there one, would be here by now
    assert len(hook.messages) == 2, hook.messages  # one per run, nothing else

    sent = json.dumps(hook.messages)
    for secret in (s3_settings.secret_key.get_secret_value(), s3_settings.access_key):
        assert secret not in sent
    assert "X-Amz-Signature" not in sent and "X-Amz-Credential" not in sent
