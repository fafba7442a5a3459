"""Stage 3: models and timing, both decided before the first image.

Models: the demo/test profiles build tiny ones from configs, once per machine; real ones load
once per worker process; the run's facts (weight hashes included) are resolved once they exist.
Timing: the storyboard's durations, snapped to the music's beats, are
every clip's length, so the edit never stretches a shot by freezing its last frame. The
voice-over lines are spoken here too (each its own cached step): a line longer than its shot
holds the shot or stops the run, as the storyboard says, before any clip is made.
"""

from __future__ import annotations

from flows.stages.run import RunContext
from reelflow.progress import step
from reelflow.render.jobs import cut_plan, lora_names, music_bed_job, music_job, speech_jobs
from reelflow.render.models import tiny_video_models
from reelflow.sound.lines import Language, check_line_lengths, voiced_languages
from reelflow.sound.music_model import ensure_tiny_music_model
from reelflow.sound.sources import Take, line_engine, line_take
from reelflow.storyboard import Storyboard
from tasks.edit import (
    generate_music_bed,
    snap_to_music,
    store_take,
    synthesize_line,
    upload_input,
)
from tasks.images import prepare_models


def prepare_run_models(run: RunContext) -> None:
    """Build the tiny models where the profile asks for them, then resolve the run's facts
    (model, tokenizer, LoRA files, weight hashes) once, for every builder of the run."""
    profile = run.profile
    with step("models", f"images {profile.image_model}, clips {profile.video_backend}"):
        if profile.image_model == "tiny":
            prepare_models(
                lora_names(run.board), profile.image_family or "sd15", tiny_video_models(profile)
            )
        run.resolve_facts()


def plan_timing(run: RunContext) -> None:
    """Decide each shot's clip length (`run.durations`), store the music file or generate the
    bed (`run.music_key`) and speak the voice-over lines (`run.lines`)."""
    board = run.board
    run.durations = [duration for duration, _, _ in cut_plan(board, "storyboard")]
    if board.music is not None and board.music.path is not None:
        run.music_key = upload_input(board.project, board.music.path,
                                     run.base_dir and str(run.base_dir))
        if board.music.snap_cuts:
            run.durations = snap_to_music(music_job(board, run.music_key, run.durations))
    # every language a version speaks (`--export ...,lang=`), each line its own cached step;
    # the versions share one picture, so a shot is held for the longest of its lines
    languages = voiced_languages(board, [export.lang for export in run.exports or []])
    endpoint = speech_endpoint_identity(board, languages)
    jobs = {lang: speech_jobs(board, lang, endpoint=endpoint, takes=store_takes(run, lang))
            for lang in languages}  # fmt: skip
    futures = {lang: [synthesize_line.submit(job) for job in found] for lang, found in jobs.items()}
    for lang, spoken in futures.items():
        run.speech[lang] = {job.shot: job for job in jobs[lang]}
        run.voices[lang] = {line.shot: line for line in (future.result() for future in spoken)}
        run.durations = check_line_lengths(board, run.durations, run.voices[lang], lang)
    if board.music is not None and board.music.prompt is not None:
        generate_bed(run)
    run.lines = run.voices.get(board.voice_language, {})


def generate_bed(run: RunContext) -> None:
    """The bed `music.prompt` asks for, as long as the film once its lines are placed (the
    tiny model is built on first use); snapped to only when the storyboard asks, and then
    the lines are checked against the snapped shots again."""
    board = run.board
    assert board.music is not None
    ensure_tiny_music_model(board.music.model)
    run.music_key = generate_music_bed(music_bed_job(board, run.durations))
    if board.music.snap_cuts:
        run.durations = snap_to_music(music_job(board, run.music_key, run.durations))
        for lang, spoken in run.voices.items():
            run.durations = check_line_lengths(board, run.durations, spoken, lang)


def speech_endpoint_identity(board: Storyboard, languages: list[Language]) -> str | None:
    """The speech endpoint's model and URL (from its block) when a line uses it: part of
    those lines' keys. The key it holds stays in the block (the speech step loads it)."""
    if not any(line_engine(board, shot, lang) == "endpoint" for shot in board.shots
               for lang in languages if shot.voiceover is not None):  # fmt: skip
        return None
    from blocks.speech_endpoint import load_speech_endpoint

    assert board.sound is not None and board.sound.endpoint  # the storyboard checks it
    return load_speech_endpoint(board.sound.endpoint).identity()


def store_takes(run: RunContext, language: Language | None = None) -> dict[str, Take]:
    """The recorded lines in ``language`` (default: the film's), stored in the bucket, by
    shot."""
    board = run.board
    base_dir = run.base_dir and str(run.base_dir)
    refs = {shot.id: line_take(board, shot, language) for shot in board.shots}
    futures = {shot: store_take.submit(board.project, shot, ref, base_dir)
               for shot, ref in refs.items() if ref}  # fmt: skip
    return {shot: future.result() for shot, future in futures.items()}
