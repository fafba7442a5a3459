"""1. Orchestration overhead: produce_video (auto approval) vs the same core calls in a loop.

Fairness: each run is a fresh interpreter (imports done before the timer), a fresh artifact
bucket and, for the flow, a fresh result-storage bucket (so no task can come back Cached); the
tiny models are built once beforehand into one REELFLOW_MODELS folder both sides share, and
both sides load the pipeline from it inside the timed region. Runs alternate flow/plain.
"""

from __future__ import annotations

from typing import Any

from bench import boards
from bench.common import Context, Section, alternate, fresh_bucket, run_worker

PROFILE = "test"


def models_dir(ctx: Context) -> Any:
    """One pre-built tiny models folder for every storyboard the benchmarks render.

    The machine's own folder (`reelflow.plan.models_dir()`, where `make demo` builds them):
    the tiny models are seeded, so a folder built earlier holds the same weights.
    """
    from reelflow.render.jobs import models_dir as default_models_dir

    path = default_models_dir()
    if not ctx.shared.get("models_ready"):
        names = sorted(
            set(boards.lora_names(boards.small_board(ctx.quick)))
            | set(boards.lora_names(boards.seed_board(ctx.quick)))
        )
        run_worker("flowrun:prepare_models", {"lora_names": names},
                   env={"REELFLOW_MODELS": str(path)})
        ctx.shared["models_ready"] = True
    return path


def run(ctx: Context) -> Section:
    board = boards.small_board(ctx.quick)
    text = boards.dump(board)
    section = Section(
        key="orchestration",
        title="1. Orchestration overhead",
        method=(
            f"`produce_video(approval='auto', profile='{PROFILE}')` on a "
            f"{len(board['shots'])}-shot "
            f"storyboard ({board['width']}x{board['height']} film) vs `reelflow.produce.*` called "
            "in a plain loop in the flow's order. Each run: fresh interpreter (imports before "
            "the timer), fresh artifact bucket, fresh result-storage bucket; tiny models pre-built "
            "once into a folder both sides share, pipeline loaded inside the timed region by both. "
            "Flow and plain runs alternate."
        ),
    )
    stack = ctx.get_stack()
    models = models_dir(ctx)
    details: dict[str, list[dict[str, Any]]] = {"flow": [], "plain": []}

    def flow(_: int) -> float:
        env = stack.flow_env(fresh_bucket("orch-flow"), models)
        out = run_worker("flowrun:run_flow", {"board_text": text, "profile": PROFILE,
                                              "results_bucket": fresh_bucket("orch-res")}, env=env)
        details["flow"].append(out)
        return out["seconds"]

    def plain(_: int) -> float:
        env = stack.flow_env(fresh_bucket("orch-plain"), models)
        out = run_worker("flowrun:run_plain", {"board_text": text, "profile": PROFILE}, env=env)
        details["plain"].append(out)
        return out["seconds"]

    samples = alternate(ctx.reps, {"flow": flow, "plain": plain})
    section.add("flow", "produce_video end to end (auto approval)", samples["flow"])
    section.add("plain", "same reelflow.render calls in a plain loop", samples["plain"])
    section.ratio("flow / plain", "flow", "plain", goal=1.15)

    films = {d["film_key"] for side in details.values() for d in side}
    section.notes.append(
        "same film key from every run on both sides (identical jobs): "
        + ("yes" if len(films) == 1 else f"NO ({len(films)} keys)")
    )
    cached = sum(s.count("Cached") for d in details["flow"] for s in d["states"].values())
    section.notes.append(f"task runs that came back Cached in the timed flow runs: {cached}")
    last = details["flow"][-1]["task_seconds"]
    review = sum(v for k, v in last.items() if k in {
        "score_variants", "images_review", "clips_review", "storyboard_review", "final_review",
        "publish_storyboard"})
    core = sum(v for k, v in last.items() if k in {
        "render_variants", "hires_fix", "take_frame", "render_clip", "assemble_film",
        "make_cover", "prepare_models", "export_version"})
    gap = section.figure("flow").median - section.figure("plain").median
    section.notes.append(
        f"attribution (last flow run, task run times from the Prefect API): core tasks "
        f"{core:.2f} s, review/scoring tasks (work the plain loop does not do) {review:.2f} s; "
        f"median gap flow - plain {gap:.2f} s"
    )
    section.notes.append(
        "task run time per task (last flow run): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(last.items(), key=lambda kv: -kv[1]))
    )
    plain_steps = details["plain"][-1]["steps"]
    section.notes.append(
        "plain loop per step (last plain run): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in plain_steps.items())
    )
    return section
