"""Operations: `deploy` (work pools, limits, blocks, automations, deployments on the Prefect
server), `worker` (a process worker that runs the deployed flows) and `doctor` (what each model
of a render would need on a GPU, before anything renders)."""

from __future__ import annotations

import os

import click

from cli.common import WHOLE, fail
from cli.stack import use_local_stack
from reelflow.render.profiles import PROFILES


@click.command(help="work pools, gpu limit, blocks, automations, deployments")
@click.option("--prefect-file", help="default: prefect.yaml of this checkout")
@click.option("--notify-url",
              help="webhook for 'run waits at a gate' (default: $REELFLOW_NOTIFY_URL)")
def deploy(prefect_file: str | None, notify_url: str | None) -> int:
    use_local_stack()
    from deployments.deploy import DeployError
    from deployments.deploy import deploy as deploy_all

    try:
        report = deploy_all(prefect_file, notify_url=notify_url)
    except (DeployError, RuntimeError, ValueError) as exc:
        return fail(str(exc))
    print(f"server:        {report.api_url}")
    for what, items in (("work pools", report.work_pools),
                        ("limits", report.concurrency_limits)):
        print(f"{what + ':':14} " + ", ".join(f"{k} ({v})" for k, v in items.items()))
    print(f"results block: {report.results_block}")
    print(f"notifications: {report.notifications}")
    for name, deployment_id in report.deployments.items():
        print(f"deployment:    {name} {deployment_id}")
    return 0


@click.command(help="start a process worker (code: the deployed bundle)")
@click.option("--pool", default="cpu", show_default=True,
              help="work pool: cpu or gpu (the pools `reelflow deploy` creates)")
@click.option("--gpu", help="CUDA_VISIBLE_DEVICES for this worker, e.g. 0")
@click.option("--name", help="worker name (default: POOL-GPU with --gpu)")
@click.option("--limit", type=WHOLE,
              help="max concurrent runs (default: 1 with --gpu, else unlimited)")
@click.option("--project-dir", help="checkout runs execute in when a deployment has no code bundle")
def worker(pool: str, gpu: str | None, name: str | None, limit: int | None,
           project_dir: str | None) -> int:
    use_local_stack()
    from deployments.worker import worker_command, worker_env

    env = worker_env(project_dir=project_dir, gpu=gpu)
    name = name or (f"{pool}-{gpu}" if gpu is not None else None)
    # one GPU renders one run at a time: a GPU worker takes the next run when its GPU is free
    limit = limit or (1 if gpu is not None else None)
    command = worker_command(pool, name=name, limit=limit)
    os.execvpe(command[0], command, env)  # the worker replaces this process (signals reach it)
    return 0


@click.command(short_help="what would load where on a GPU, before anything renders",
               help="for a storyboard and profile: per model, what loads where (resident, "
               "offloaded, fp8 storage, VAE tiling), the expected peak and what does not fit; "
               "on this machine or for a card of --gpu-memory. Exit 1 when a model does not fit.")
@click.argument("file", required=False)
@click.option("--profile", type=click.Choice(list(PROFILES)), default="full", show_default=True)
@click.option("--gpu-memory", metavar="SIZE", help="plan for a card of this size (24GB, 16GiB)")
@click.option("--host-memory", metavar="SIZE",
              help="RAM offloaded weights may use (default: what is available now)")
@click.option("--video-model", metavar="NAME",
              help="the clip model when the profile does not name one (wan2.2-a14b, ltx-2)")
@click.option("--reference", is_flag=True,
              help="the 24 GB and 80 GB plans of Flux-dev, Wan 2.2 A14B, LTX-2 and SDXL")
def doctor(file: str | None, profile: str, gpu_memory: str | None, host_memory: str | None,
           video_model: str | None, reference: bool) -> int:
    from reelflow.gpu.doctor import doctor as plan_storyboard
    from reelflow.gpu.doctor import reference_plans

    if reference:
        print(reference_plans())
        return 0
    if file is None:
        raise click.UsageError("give a storyboard FILE, or --reference")
    report = plan_storyboard(file, profile, gpu_memory=gpu_memory, host_memory=host_memory,
                             video_model=video_model)  # bad input: main() prints one line
    print(report.text())
    return 0 if report.fits else 1


def register(group: click.Group) -> None:
    from cli.models import models

    group.add_command(deploy)
    group.add_command(worker)
    group.add_command(doctor)
    group.add_command(models)
