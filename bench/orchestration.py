"""1. Orchestration overhead: produce_video (auto approval) vs the same core calls in a loop.

The seed film at the demo profile, three sides: the flow (its task runner runs independent
shots at once), the plain loop one step after another (1: the orchestration must pay for
itself), and the plain loop with the flow's own parallelism (1b: what Prefect itself costs).
Fairness: each run is a fresh interpreter (imports done before the timer), a fresh artifact
bucket and, for the flow, a fresh result-storage bucket (so no task can come back Cached); the
tiny models are built once beforehand into one REELFLOW_MODELS folder every side shares, and
every side loads the pipeline from it inside the timed region. Sides alternate.
"""

from __future__ import annotations

from typing import Any

from bench import boards
from bench.common import Context, Section, alternate, fresh_bucket, run_worker

# The seed film at the demo profile (the figure); the quick smoke run keeps the small
# 2-shot film at the test profile.
REPS_CAP = 2  # a cold seed-film run is minutes: 2 per side x 3 sides keeps the section ~15 min


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
    profile = "test" if ctx.quick else "demo"
    board = boards.small_board(True) if ctx.quick else boards.seed_board(False)
    text = boards.dump(board)
    reps = min(ctx.reps, REPS_CAP)
    section = Section(
        key="orchestration",
        title="1. Orchestration overhead",
        method=(
            f"`produce_video(approval='auto', profile='{profile}')` on a "
            f"{len(board['shots'])}-shot storyboard ({board['width']}x{board['height']} film) "
            "vs the same `reelflow.render` calls from the same job builders in a plain loop, "
            "run one step after another (`plain`) and with the flow's parallelism (`plain "
            "parallel`: a thread pool as wide as the flow's task runner, model steps holding "
            "the same model slots). Each run: fresh interpreter (imports before the timer), "
            "fresh artifact bucket, fresh result-storage bucket; tiny models pre-built once "
            "into a folder every side shares, pipeline loaded inside the timed region by all. "
            f"Sides alternate; {reps} runs per side (a cold film run is the expensive unit)."
        ),
    )
    stack = ctx.get_stack()
    models = models_dir(ctx)
    details: dict[str, list[dict[str, Any]]] = {"flow": [], "plain": [], "plain parallel": []}

    def flow(_: int) -> float:
        env = stack.flow_env(fresh_bucket("orch-flow"), models)
        out = run_worker("flowrun:run_flow", {"board_text": text, "profile": profile,
                                              "results_bucket": fresh_bucket("orch-res")}, env=env)
        details["flow"].append(out)
        return out["seconds"]

    def plain(parallel: bool) -> Any:
        def side(_: int) -> float:
            env = stack.flow_env(fresh_bucket("orch-plain"), models)
            out = run_worker("flowrun:run_plain", {"board_text": text, "profile": profile,
                                                   "parallel": parallel}, env=env)
            details["plain parallel" if parallel else "plain"].append(out)
            return out["seconds"]
        return side

    samples = alternate(reps, {"flow": flow, "plain": plain(False),
                               "plain parallel": plain(True)})
    section.add("flow", "produce_video end to end (auto approval)", samples["flow"])
    section.add("plain", "same reelflow.render calls, one after another", samples["plain"])
    section.add("plain parallel", "same calls with the flow's parallelism",
                samples["plain parallel"])
    section.ratio("1. flow / plain sequential", "flow", "plain", goal=1.0)
    section.ratio("1b. flow / plain parallel", "flow", "plain parallel", goal=1.15)

    films = {d["film_key"] for side in details.values() for d in side}
    section.notes.append(
        "same film key from every run on every side (identical jobs): "
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
    gap = section.figure("flow").median - section.figure("plain parallel").median
    section.notes.append(
        f"attribution (last flow run, task run times from the Prefect API): core tasks "
        f"{core:.2f} s, review/scoring tasks (work the plain loop does not do) {review:.2f} s; "
        f"median gap flow - plain parallel {gap:.2f} s"
    )
    section.notes.append(
        "task run time per task (last flow run): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(last.items(), key=lambda kv: -kv[1]))
    )
    for side in ("plain", "plain parallel"):
        section.notes.append(
            f"{side} loop per step (last run): "
            + ", ".join(f"{k} {v:.2f}s" for k, v in details[side][-1]["steps"].items())
        )
    return section
