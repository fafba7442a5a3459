"""The unattended queue: batch-render, deployed and run by a real process worker against the
session's Prefect server and S3. Three storyboards wait under queue/incoming/, one of them
invalid: the two good ones become films and move to queue/done/, the bad one moves to
queue/failed/ with its validation message beside it, and the batch itself completes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from reelflow.store.artifacts import ArtifactStore
from reelflow.store.settings import S3Settings
from tests.support.boards import board, one_shot_board
from tests.support.deployed import OpsStack, ops_stack, read_run, wait_for_state

BUCKET = "batch"


@pytest.fixture(scope="module")
def ops(
    tmp_path_factory: pytest.TempPathFactory, s3_settings: S3Settings, prefect_server: str
) -> Iterator[OpsStack]:
    home = tmp_path_factory.mktemp("batch")
    with ops_stack(home, s3_settings, bucket=BUCKET, pools=("cpu",),
                   api_url=prefect_server) as stack:
        yield stack


def test_batch_renders_good_storyboards_and_sets_the_bad_one_aside(
    ops: OpsStack, s3_settings: S3Settings
) -> None:
    from prefect.deployments import run_deployment

    store = ArtifactStore(s3_settings.with_bucket(BUCKET))
    bad = board("batch-bad").replace("id: b,", "id: Bad Shot,")
    # a folder under incoming/ names the project a board is filed into (projects are
    # boundaries): d-wrong says batch-two but is filed under batch-one
    queue = {"a-first.yaml": one_shot_board("batch-one"), "b-broken.yaml": bad,
             "batch-one/d-wrong.yaml": one_shot_board("batch-two"),
             "batch-two/c-second.yaml": one_shot_board("batch-two")}
    for name, text in queue.items():  # as a person would upload them: bare objects, no sidecar
        store.put_bytes(f"queue/incoming/{name}", text.encode(), "text/yaml", sidecar=False)

    run = run_deployment("batch-render/batch-render",
                         parameters={"prefix": "queue/", "approval": "auto", "profile": "test"},
                         timeout=0)
    wait_for_state(run.id, {"Completed"}, ops, timeout=400)

    assert store.list("queue/incoming/") == [], store.list("queue/")
    assert "b-broken.yaml failed" in ops.logs()
    assert store.list("queue/done/") == [
        "queue/done/a-first.yaml", "queue/done/a-first.yaml.result.json",
        "queue/done/c-second.yaml", "queue/done/c-second.yaml.result.json",
    ]
    assert store.list("queue/failed/") == [
        "queue/failed/b-broken.yaml", "queue/failed/b-broken.yaml.reason.txt",
        "queue/failed/d-wrong.yaml", "queue/failed/d-wrong.yaml.reason.txt",
    ]
    wrong = store.get_bytes("queue/failed/d-wrong.yaml.reason.txt").decode()
    assert wrong == ("d-wrong.yaml project: 'batch-two', but the storyboard is filed under "
                     "project 'batch-one'; a storyboard renders only into the project it is "
                     "filed under (file it under batch-two/ or set project: batch-one)")
    reason = store.get_bytes("queue/failed/b-broken.yaml.reason.txt").decode()
    assert reason.startswith("b-broken.yaml:")
    assert "shots[1].id: must be a slug" in reason
    assert store.get_bytes("queue/failed/b-broken.yaml", verify=False).decode() == bad

    for name, project in (("a-first", "batch-one"), ("c-second", "batch-two")):
        film = json.loads(store.get_bytes(f"queue/done/{name}.yaml.result.json"))["film"]
        assert film.startswith(f"s3://{BUCKET}/projects/{project}/")
        assert store.exists(film.split("/", 3)[3])

    report = read_run(run.id).state.result()
    assert [(i.source.rsplit("/", 1)[1], i.status) for i in report.items] == [
        ("a-first.yaml", "done"), ("b-broken.yaml", "failed"), ("d-wrong.yaml", "failed"),
        ("c-second.yaml", "done")]


def test_an_empty_queue_is_a_quiet_success(ops: OpsStack) -> None:
    from prefect.deployments import run_deployment

    run = run_deployment("batch-render/batch-render",
                         parameters={"prefix": "queue-empty/", "profile": "test"}, timeout=0)
    wait_for_state(run.id, {"Completed"}, ops, timeout=180)
    assert read_run(run.id).state.result().items == []
