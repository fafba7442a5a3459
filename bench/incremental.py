"""2. Incremental re-render: one shot's prompt changed in the nine-shot seed film.

A cold run (fresh artifact and result buckets, tiny models pre-built) renders the seed
storyboard with the `demo` profile through `produce_video(approval='auto')`; then, against the
same buckets, each repetition edits the description of one shot (a new wording each time, so
every repetition really has one changed shot) and runs again in a fresh interpreter. An
unchanged re-run (everything Cached) is measured too.
"""

from __future__ import annotations

from bench import boards
from bench.common import Context, Section, fresh_bucket, run_worker
from bench.orchestration import models_dir


def run(ctx: Context) -> Section:
    profile = "test" if ctx.quick else "demo"
    board = boards.seed_board(ctx.quick)
    section = Section(
        key="incremental",
        title="2. Incremental re-render",
        method=(
            f"Seed film `examples/su7-winter-spring.yaml` ({len(board['shots'])} shots, "
            f"{board['width']}x{board['height']} @ {board['fps']} fps), profile `{profile}`, "
            "through `produce_video(approval='auto')`, each run in a fresh interpreter. Cold: "
            "fresh artifact + result buckets, models pre-built (1 run: it is the expensive one). "
            f"Then per repetition the description of `{boards.CHANGED_SHOT}` is edited and the "
            "flow runs again on the same buckets; `caption changed` rewords that shot's caption "
            "instead; `unchanged` re-runs the original storyboard."
        ),
    )
    stack = ctx.get_stack()
    env = stack.flow_env(fresh_bucket("incr"), models_dir(ctx))
    results = fresh_bucket("incr-res")

    def flow(text: str) -> dict:
        return run_worker("flowrun:run_flow", {"board_text": text, "profile": profile,
                                               "results_bucket": results}, env=env)

    cold = flow(boards.dump(board))
    edits = [flow(boards.dump(boards.with_changed_prompt(board, k))) for k in range(ctx.reps)]
    # 2b: only the words on screen change: no image, clip or film part is made again, only
    # the captioned version's parts that show that caption
    recaptioned = [flow(boards.dump(boards.with_changed_caption(board, k)))
                   for k in range(ctx.reps)]  # fmt: skip
    unchanged = None if ctx.quick else flow(boards.dump(board))
    section.add("cold", "first run of the storyboard, nothing in the bucket", [cold["seconds"]])
    section.add("one shot changed", "re-run after editing one shot's description",
                [e["seconds"] for e in edits])
    section.ratio("changed / cold", "one shot changed", "cold", goal=0.2)
    section.add("caption changed", "re-run after rewording one shot's caption",
                [e["seconds"] for e in recaptioned])
    section.ratio("caption changed / cold", "caption changed", "cold", goal=0.1)
    if unchanged is not None:  # the quick smoke run leaves it out
        section.add("unchanged", "re-run of the same storyboard (all Cached)",
                    [unchanged["seconds"]])
        section.ratio("unchanged / cold", "unchanged", "cold")

    encoded = sorted(n for n, s in recaptioned[-1]["states"].items() if s and s[-1] != "Cached")
    section.notes.append("task runs not Cached after the caption change: " + ", ".join(encoded))
    last = edits[-1]
    recomputed = sorted(n for n, s in last["states"].items() if s and s[-1] != "Cached")
    section.notes.append(
        "task runs not Cached in the last edited run: " + ", ".join(recomputed)
    )
    top = sorted(last["task_seconds"].items(), key=lambda kv: -kv[1])[:8]
    section.notes.append(
        "where the edited run spends its time (task run seconds): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in top)
    )
    top = sorted(cold["task_seconds"].items(), key=lambda kv: -kv[1])[:8]
    section.notes.append(
        "where the cold run spends its time (task run seconds): "
        + ", ".join(f"{k} {v:.2f}s" for k, v in top)
    )
    return section
