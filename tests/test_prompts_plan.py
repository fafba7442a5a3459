"""Prompt composition and planning: deterministic, budgeted, and local to the shot that changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.render.jobs import frame_job, plan_render, shot_seed
from reelflow.render.profiles import get_profile
from reelflow.storyboard import load_storyboard
from reelflow.storyboard.prompts import compose_prompt, count_tokens

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "su7-winter-spring.yaml"


def test_composition_is_deterministic_and_ordered() -> None:
    board = load_storyboard(EXAMPLE)
    shot = board.shots[0]
    first = compose_prompt(board, shot, family="flux")
    assert first == compose_prompt(board, shot, family="flux")
    assert first.prompt.startswith("su7ultra, ")  # character trigger first
    assert "aerial view" in first.prompt and "highly detailed" in first.prompt
    assert first.negative_prompt == board.style.negative_prompt
    assert first.fits


def test_long_prompts_fit_in_clip_windows_whole() -> None:
    """The seed film's prompts are longer than one CLIP window (75 tokens) and are kept whole:
    they are encoded window by window (tests/test_long_prompts.py)."""
    board = load_storyboard(EXAMPLE)
    composed = compose_prompt(board, board.shots[0], family="sd15")
    assert composed.token_count > 75 and composed.fits
    assert composed.prompt.endswith("highly detailed, realistic, 8k resolution, sharp focus")
    assert composed.token_budget == 300


def test_clip_budget_reports_what_is_cut_word_for_word() -> None:
    board = load_storyboard(EXAMPLE)
    board.shots[0].scene = ", ".join(f"scene detail {n}" for n in range(120))  # ~360 tokens
    composed = compose_prompt(board, board.shots[0], family="sd15")
    assert composed.token_count <= 300
    assert composed.truncated and composed.truncated[0] == board.shots[0].scene
    assert "highly detailed, realistic, 8k resolution, sharp focus" in composed.truncated
    assert "su7ultra" in composed.prompt  # the most important part survives
    for dropped in composed.truncated:
        assert dropped not in composed.prompt
    assert count_tokens(composed.prompt) <= composed.token_budget


def test_weight_syntax_is_not_counted_as_tokens() -> None:
    assert count_tokens("a (red:1.3) car, [blurry]") == count_tokens("a red car, blurry")


def test_reviewer_notes_rank_above_the_scene() -> None:
    board = load_storyboard(EXAMPLE)
    note = "front view showing the headlights and grille of the car"
    composed = compose_prompt(board, board.shots[1], notes=[note])
    assert note in composed.prompt
    assert composed.prompt.index(note) < composed.prompt.index("low-angle")


def test_changing_one_shot_changes_only_its_jobs() -> None:
    board = load_storyboard(EXAMPLE)
    profile = get_profile("demo")
    before = plan_render(board, profile)
    edited = board.model_copy(deep=True)
    edited.shots[2].description = "the car seen from the front, headlights on"
    after = plan_render(edited, profile)
    changed = [a.shot for a, b in zip(before.images, after.images, strict=True)
               if a.spec_hash() != b.spec_hash()]
    assert changed == ["s03-winter-highway"]


def test_seeds_are_stable_per_shot_and_profile_is_visible() -> None:
    board = load_storyboard(EXAMPLE)
    reordered = board.model_copy(deep=True)
    reordered.shots = list(reversed(reordered.shots[:4])) + reordered.shots[4:]
    assert shot_seed(board, board.shots[0]) == shot_seed(reordered, reordered.shots[3])
    demo = plan_render(board, get_profile("demo"))
    full = plan_render(board, get_profile("full"))
    assert (demo.images[0].width, demo.images[0].steps) == (128, 4)
    assert (full.images[0].width, full.images[0].height, full.images[0].steps) == (1536, 864, 30)
    assert full.images[0].variants == 3
    assert demo.images[0].model.source == "@models/tiny-sd"
    assert demo.images[0].spec_hash() != full.images[0].spec_hash()
    # the transition shot has two referenced frames and no still of its own
    assert "s05-winter-to-spring" not in {job.shot for job in demo.images}
    transition = board.shot("s05-winter-to-spring")
    frames = [
        frame_job(board, transition, ref, get_profile("demo"), "projects/p/shots/s/clips/c.mp4")
        for ref in (transition.first_frame, transition.last_frame)
        if ref is not None
    ]
    assert [f.source_shot for f in frames] == ["s04-summit", "s04-summit"]
    assert frames[1].restyle_prompt and frames[1].restyle_prompt.startswith("spring")


def test_cut_styles_reuse_the_shots() -> None:
    from reelflow.render.jobs import cut_plan

    board = load_storyboard(EXAMPLE)
    storyboard = cut_plan(board, "storyboard")
    assert [d for d, _, _ in storyboard] == [s.duration for s in board.shots]
    fast = cut_plan(board, "fast")
    assert all(t == "cut" for _, t, _ in fast)
    assert sum(d for d, _, _ in fast) < 0.7 * board.duration
    assert all(d >= 1.0 for d, _, _ in fast)
    slow = cut_plan(board, "slow")
    assert [t for _, t, _ in slow][1:] == ["crossfade"] * (len(board.shots) - 1)
    assert all(0 < length <= 1.5 for _, _, length in slow[1:])


def test_plan_lists_every_shot_and_what_each_encoder_receives(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cli.main import main

    monkeypatch.setenv("REELFLOW_MODELS", str(tmp_path))  # no model here: counts are estimated
    assert main(["plan", str(EXAMPLE), "--profile", "demo"]) == 0
    out = capsys.readouterr().out
    board = load_storyboard(EXAMPLE)
    for shot in board.shots:
        assert f"\n{shot.id}: " in f"\n{out}", shot.id
    assert "s05-winter-to-spring: 3 s, a transition from s04-summit's last frame to " \
           "s04-summit's last frame restyled to" in out
    assert out.count("clip-l: ") == len(board.shots) - 1  # the transition has no prompt
    assert "in 2 windows of 75" in out and "over the token budget" not in out
