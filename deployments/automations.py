"""The "a run waits at a gate" notification: a Custom Webhook block plus an automation.

Prefect has no on-paused hook; paused and suspended runs emit `prefect.flow-run.Paused` /
`prefect.flow-run.Suspended` events, and the server's automation service reacts to them. The
message names the run, its gate (the pause key: `storyboard-1`, `images-2`, ...) and its UI link.
The events carry no pause key, so the gate reads it from the run's `reelflow.gate` label, which
`flows.gates.wait_for_review` sets just before it pauses or suspends.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from deployments.config import NotificationSpec

SUBJECT = "reelflow: {{ flow_run.name }} waits for approval"
BODY = (
    "Run {{ flow_run.name }} of {{ flow.name }}"
    "{% if deployment %} (deployment {{ deployment.name }}){% endif %} waits at gate "
    "{{ flow_run.labels['reelflow.gate'] if flow_run.labels and 'reelflow.gate' in "
    "flow_run.labels else '(unknown)' }} "
    "({{ event.resource['prefect.state-name'] }}).\n"
    "Open it: {ui}/runs/flow-run/{{ flow_run.id }}\n"
    "Or approve from a shell: reelflow approve {{ flow_run.id }}"
)


def ensure_webhook_block(spec: NotificationSpec) -> UUID:
    """Save the Custom Webhook block that posts `{"subject", "body"}` as JSON; returns its id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name=spec.block,
        url=spec.webhook_url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "reelflow"},
        timeout=10,
    )
    return block.save(spec.block, overwrite=True)


def gate_automation(spec: NotificationSpec, block_id: UUID, ui_url: str) -> Any:
    """The automation: any flow run entering Paused or Suspended sends one notification."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=spec.automation,
        description="Tell reviewers which run waits at which approval gate.",
        enabled=True,
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            expect=set(spec.events),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=SUBJECT,
                body=BODY.replace("{ui}", ui_url.rstrip("/")),
            )
        ],
    )


def ensure_gate_notifications(client: Any, spec: NotificationSpec, ui_url: str) -> str:
    """Create or update the automation (one per name); returns 'created', 'updated' or 'off'."""
    if not spec.webhook_url:
        removed = [a.id for a in client.read_automations_by_name(spec.automation)]
        for automation_id in removed:
            client.delete_automation(automation_id)
        return "off"
    block_id = ensure_webhook_block(spec)
    return _upsert_automation(client, spec.automation, gate_automation(spec, block_id, ui_url))


def _upsert_automation(client: Any, name: str, wanted: Any) -> str:
    """Make the automation called ``name`` read ``wanted``: create it, or update the first of
    that name and delete any others (names are not unique in Prefect; ours must be).
    Returns 'created' or 'updated'."""
    existing = client.read_automations_by_name(name)
    if not existing:
        client.create_automation(wanted)
        return "created"
    first, *extra = existing
    for automation in extra:
        client.delete_automation(automation.id)
    client.update_automation(first.id, wanted)
    return "updated"


# -- crashed-run detection ----------------------------------------------------------------------

ZOMBIE_AUTOMATION = "reelflow-crash-zombie-flow-runs"
HEARTBEAT_SECONDS = 30
"""What `reelflow worker` sets PREFECT_FLOWS_HEARTBEAT_FREQUENCY to (Prefect's minimum; its
default, 180 s, would make the grace below either useless or slow)."""
FINAL_EVENTS = {
    "prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed", "prefect.flow-run.Suspended",
    "prefect.flow-run.Paused",
}


def zombie_automation(grace_seconds: int) -> Any:
    """Prefect's recipe for runs whose process died (a worker or machine lost): a flow run that
    sent a heartbeat and then nothing (no heartbeat, no final state) for `grace_seconds` is
    marked Crashed, which the parent's fan-out sees and re-submits."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description=f"Mark flow runs Crashed after {grace_seconds}s without a heartbeat.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect=set(FINAL_EVENTS),
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=grace_seconds),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {grace_seconds}s: its worker or machine is gone",
        )],
    )


def ensure_zombie_automation(client: Any, grace_seconds: int) -> str:
    """Create or update the crashed-run automation; returns 'created' or 'updated'."""
    return _upsert_automation(client, ZOMBIE_AUTOMATION, zombie_automation(grace_seconds))
