"""7. Scale of the storyboard: validation + prompt composition + planning for 5/50/500 shots
(500 is the most a storyboard may hold: `reelflow.storyboard.model.MAX_SHOTS`).

In-process and CPU-only: `parse_storyboard` (YAML + pydantic validation and cross-references),
`compose_all` and `plan_render` (every job built and hashed) on the seed film's shots repeated
to N. The figure is seconds per shot; growth is linear when that stays flat.
"""

from __future__ import annotations

from bench import boards
from bench.common import Context, Section, timed


def run(ctx: Context) -> Section:
    from reelflow.render.jobs import plan_render
    from reelflow.render.profiles import get_profile
    from reelflow.storyboard import parse_storyboard
    from reelflow.storyboard.model import MAX_SHOTS
    from reelflow.storyboard.prompts import compose_all

    sizes = (5, 50) if ctx.quick else (5, 50, MAX_SHOTS)
    reps = max(ctx.reps, 3)
    profile = get_profile("demo")
    section = Section(
        key="scale",
        title="7. Storyboard scale",
        method=(
            f"parse_storyboard (YAML + validation) + compose_all + plan_render for "
            f"{', '.join(map(str, sizes))} shots (the seed film's shots repeated, first/last "
            f"frame references kept), profile `demo`; {reps} repetitions per size, in-process."
        ),
    )
    breakdown: dict[int, dict[str, float]] = {}
    for n in sizes:
        text = boards.dump(boards.scaled_board(n))
        totals, parts = [], {"parse": [], "compose": [], "plan": []}
        for _ in range(reps):
            t_parse, board = timed(lambda text=text: parse_storyboard(text))
            t_compose, _ = timed(lambda board=board: compose_all(board, family="sd15"))
            t_plan, plan = timed(lambda board=board: plan_render(board, profile))
            assert len(plan.images) <= n
            parts["parse"].append(t_parse)
            parts["compose"].append(t_compose)
            parts["plan"].append(t_plan)
            totals.append((t_parse + t_compose + t_plan) / n)
        section.add(f"{n} shots", f"seconds per shot, {n}-shot storyboard", totals)
        breakdown[n] = {k: sorted(v)[len(v) // 2] for k, v in parts.items()}
    big, mid = sizes[-1], sizes[-2]
    section.ratio(f"per shot {big} / {mid}", f"{big} shots", f"{mid} shots", goal=1.5)
    if mid != sizes[0]:
        section.ratio(f"per shot {mid} / {sizes[0]}", f"{mid} shots", f"{sizes[0]} shots")
    for n, parts in breakdown.items():
        section.notes.append(
            f"{n} shots, median seconds: " + ", ".join(f"{k} {v:.4f}" for k, v in parts.items())
        )
    section.notes.append(
        "goal: linear growth, read as time per shot at the largest size <= 1.5x that at the "
        "next size down"
    )
    return section
