"""Voice-over lines at the clips gate: a director hears each line (its audio, text and length
are on the gate) and re-takes one with a new text, voice or speed.

A re-take speaks only that line again (its own cached speech step) and the delivery re-mixes;
no clip is made again. A re-taken line longer than its shot follows `sound.line_too_long`:
`refuse` refuses the answer (the gate asks again, saying why), `extend` lengthens the shot, and
the next round of the gate (which comes back so the new take can be heard) makes that shot's
clip again at its new length, as the first round would have.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flows.stages.run import RunContext
from reelflow.errors import ReelflowError
from reelflow.render.decisions import AnswerError, LineOnTable, LineRetake
from reelflow.render.jobs import SpeechJob, SpokenLine
from reelflow.sound.lines import check_line_lengths
from tasks.edit import synthesize_line


def lines_on_table(run: RunContext) -> dict[str, dict[str, LineOnTable]]:
    """Shot -> language -> its line as spoken now, in storyboard order, the film's language
    first. Recorded takes are listed in the review but cannot be re-taken here (no engine
    speaks them)."""
    table: dict[str, dict[str, LineOnTable]] = {}
    for shot in run.board.shots:
        for language, jobs in run.speech.items():
            job = jobs.get(shot.id)
            line = run.voices.get(language, {}).get(shot.id)
            if job is None or line is None or job.engine == "recorded":
                continue
            table.setdefault(shot.id, {})[language] = LineOnTable(
                key=line.key, text=job.text, voice=job.voice, speed=job.speed,
                duration=line.duration, engine=job.engine,
            )  # fmt: skip
    return table


def retake_lines(run: RunContext, retakes: list[LineRetake], round_: int, reviewer: str) -> None:
    """Speak the re-taken lines again and fit them to their shots; the run's lines, speech
    steps and durations change only when every one fits. AnswerError (the gate asks again)
    for a line the engine cannot speak or one refused as longer than its shot."""
    if not retakes:
        return
    asked: dict[tuple[str, str], SpeechJob] = {}
    for retake in retakes:
        job = run.speech[retake.language][retake.shot]
        asked[(retake.language, retake.shot)] = job.model_copy(
            update={"text": retake.text, "voice": retake.voice, "speed": retake.speed}
        )
    futures = {where: synthesize_line.submit(job) for where, job in asked.items()}
    voices = {language: dict(lines) for language, lines in run.voices.items()}
    durations = run.durations
    spoken: dict[tuple[str, str], SpokenLine] = {}
    try:
        for (language, shot), future in futures.items():
            spoken[(language, shot)] = voices[language][shot] = future.result()
        for language, lines in voices.items():
            durations = check_line_lengths(run.board, durations, lines, language)
    except ReelflowError as exc:  # a voice the engine lacks, a line refused as too long
        where = ", ".join(f"{shot} ({language})" for language, shot in asked)
        raise AnswerError(f"re-take of {where}: {exc}") from None
    now = datetime.now(UTC).isoformat()
    for (language, shot), job in asked.items():
        line = spoken[(language, shot)]
        run.retakes.append({
            "shot": shot, "language": language, "round": round_, "reviewer": reviewer,
            "decided_at": now, "text": job.text, "voice": job.voice, "speed": job.speed,
            "key": line.key, "duration": line.duration,
            "replaces": run.voices[language][shot].key,
        })  # fmt: skip
        run.speech[language][shot] = job
    run.voices = voices
    run.lines = voices.get(run.board.voice_language, {})
    run.durations = durations


def voice_lines(run: RunContext) -> list[dict[str, object]]:
    """Every line of the run as the clips gate's description lists it (recorded takes too):
    shot, language, its audio object, text, length, voice and speed."""
    found = []
    for shot in run.board.shots:
        for language, jobs in run.speech.items():
            job = jobs.get(shot.id)
            line = run.voices.get(language, {}).get(shot.id)
            if job is not None and line is not None:
                found.append({"shot": shot.id, "language": language, "key": line.key,
                              "text": job.text, "duration": line.duration, "voice": job.voice,
                              "speed": job.speed, "engine": job.engine})  # fmt: skip
    return found


def retaken_now(run: RunContext, round_: int) -> dict[str, str]:
    """`shot/language` -> the key of the take that the last round's re-take replaced."""
    return {f"{r['shot']}/{r['language']}": str(r["replaces"])
            for r in run.retakes if r["round"] == round_ - 1}  # fmt: skip
