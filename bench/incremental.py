"""2. Incremental re-render: one shot's prompt changed in the nine-shot seed film.

All runs go through `produce_video(approval='auto')` in one interpreter, as on a long-lived
worker: a warm-up film (another project, so it shares no key) loads the pipelines first, then a
cold run (fresh artifact and result buckets, tiny models pre-built) renders the seed storyboard
with the `demo` profile; against the same buckets, each repetition edits the description of one
shot (a new wording each time, so every repetition really has one changed shot), then one
shot's caption, and runs again. An unchanged re-run (everything Cached) is measured too. The
model load is the warm-up's, reported apart: a fresh interpreter pays it on every run alike.
"""

from __future__ import annotations

from bench import boards
from bench.common import Context, Section, fresh_bucket, run_worker
from bench.orchestration import models_dir


def warmup_board(quick: bool) -> dict:
    """The seed film's first three shots under another project and wording: it loads every
    pipeline the film uses and shares no key with it."""
    board = boards.seed_board(quick)
    board["project"] = "bench-warmup"
    board["shots"] = board["shots"][:3]
    for shot in board["shots"]:
        shot.pop("first_frame", None)
        shot.pop("last_frame", None)
        shot["description"] = "warm-up: " + shot["description"]
    return board


def run(ctx: Context) -> Section:
    profile = "test" if ctx.quick else "demo"
    board = boards.seed_board(ctx.quick)
    section = Section(
        key="incremental",
        title="2. Incremental re-render",
        method=(
            f"Seed film `examples/su7-winter-spring.yaml` ({len(board['shots'])} shots, "
            f"{board['width']}x{board['height']} @ {board['fps']} fps), profile `{profile}`, "
            "through `produce_video(approval='auto')`, every run in one worker interpreter with "
            "the pipelines resident (a 3-shot warm-up film of another project loads them first; "
            "its time is reported apart). Cold: fresh artifact + result buckets, models "
            "pre-built (1 run: it is the expensive one). Then per repetition the description "
            f"of `{boards.CHANGED_SHOT}` is edited and the flow runs again on the same buckets; "
            "`caption changed` rewords that shot's caption instead; `unchanged` re-runs the "
            "original storyboard."
        ),
    )
    stack = ctx.get_stack()
    env = stack.flow_env(fresh_bucket("incr"), models_dir(ctx))
    texts = [boards.dump(board)]
    texts += [boards.dump(boards.with_changed_prompt(board, k)) for k in range(ctx.reps)]
    # 2b: only the words on screen change: no image, clip or film part is made again, only
    # the captioned version's parts that show that caption
    texts += [boards.dump(boards.with_changed_caption(board, k)) for k in range(ctx.reps)]
    if not ctx.quick:  # the quick smoke run leaves the all-Cached re-run out
        texts.append(boards.dump(board))
    series = run_worker(
        "flowrun:run_flow_series",
        {"board_texts": texts, "profile": profile, "results_bucket": fresh_bucket("incr-res"),
         "warmup_text": boards.dump(warmup_board(ctx.quick))},
        env=env, timeout=3600,
    )
    runs = series["runs"]
    cold, edits = runs[0], runs[1 : 1 + ctx.reps]
    recaptioned = runs[1 + ctx.reps : 1 + 2 * ctx.reps]
    unchanged = runs[1 + 2 * ctx.reps] if len(runs) > 1 + 2 * ctx.reps else None
    section.add("warm-up", "3-shot film of another project: loads the pipelines (not a ratio)",
                [series["warmup_seconds"]])
    section.add("cold", "first run of the storyboard, nothing in the bucket", [cold["seconds"]])
    section.add("one shot changed", "re-run after editing one shot's description",
                [e["seconds"] for e in edits])
    section.ratio("2. changed / cold", "one shot changed", "cold", goal=0.2)
    section.add("caption changed", "re-run after rewording one shot's caption",
                [e["seconds"] for e in recaptioned])
    section.ratio("2b. caption changed / cold", "caption changed", "cold", goal=0.1)
    if unchanged is not None:
        section.add("unchanged", "re-run of the same storyboard (all Cached)",
                    [unchanged["seconds"]])
        section.ratio("unchanged / cold", "unchanged", "cold")
    # the long-film complaint: the edit must cost no more than the images and clips
    cost = cold["task_seconds"]
    edit = sum(cost.get(k, 0.0) for k in ("assemble_film", "export_version", "make_cover"))
    made = sum(cost.get(k, 0.0) for k in ("render_variants", "hires_fix", "retouch",
                                          "take_frame", "render_clip"))
    section.add("cold: edit", "task run seconds of assembly, versions and covers", [edit])
    section.add("cold: images and clips", "task run seconds of variants, hi-res, frames, clips",
                [made])
    section.ratio("edit / images and clips (cold)", "cold: edit", "cold: images and clips",
                  goal=1.0)
    films = {r["film_key"] for r in (cold, unchanged) if r is not None}
    section.notes.append("the unchanged re-run delivers the cold run's film key: "
                         + ("yes" if len(films) == 1 else "NO"))

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
