"""Stage 6: delivery. The edit of each style of cut, its masters (one per language and
loudness), every version asked for (framing, codec, captions, language) and a cover for each,
drawn from the clean master.

Names keep their meaning: the *edit* is the assembled picture, the *master* is the edit with
its sound (music, voice-over, the clips' own sound; the edit itself when there is none), the
*film* is the delivered version — with the captions the storyboard asks for — that `--out`
saves as final.mp4.
"""

from __future__ import annotations

from prefect.futures import PrefectFuture
from pydantic import BaseModel

from flows.stages.run import RunContext
from reelflow.render.edit.sound import makes_sound
from reelflow.render.edit.versions import upscaled_by
from reelflow.render.jobs import (
    ExportSpec,
    cover_job,
    cut_plan,
    default_export,
    edit_job,
    master_job,
    music_job,
    profile_upscaler,
    version_job,
)
from reelflow.render.jobs.specs import ClipSoundJob, ClipStemJob, EditClip, SpokenLine
from tasks.edit import (
    assemble_film,
    clip_sound_stem,
    export_version,
    make_cover,
    master_with_clip_sound,
    master_with_music,
    snap_to_music,
)


class Cut(BaseModel):
    """One style of cut's picture (the edit, shared by every language and loudness) and the
    clips' own sound on it (a stem, when the backend made sound)."""

    edit_key: str
    durations: list[float]
    clips: list[EditClip]
    fps: int
    clip_sound_key: str | None = None

    def clip_job(self, project: str) -> ClipSoundJob:
        return ClipSoundJob(project=project, edit_key=self.edit_key, clips=self.clips, fps=self.fps)


class Delivery(BaseModel):
    film_key: str  # the first version: what the storyboard asked for, captions included
    cover_key: str
    edit_key: str
    master_key: str
    durations: list[float]  # the film's shot durations
    versions: dict[str, str]  # export name -> key
    version_covers: dict[str, str]
    upscalers: dict[str, str] = {}  # export name -> what upscaled it (see upscaled_by)


def deliver(run: RunContext, clips: dict[str, str], exports: list[ExportSpec] | None) -> Delivery:
    """Every version asked for. The picture is made once per style of cut; each (cut, language,
    loudness) gets its own mix and master over it (the picture stream-copied), and each version
    is encoded from its master's picture parts, so a Chinese and an English version of one
    framing share every part their captions leave alone."""
    # a version asked for twice is made once (its name holds every setting of ExportSpec)
    exports = [profile_upscaler(export, run.profile)
               for export in exports or [default_export(run.board)]]  # fmt: skip
    exports = list({export.name: export for export in exports}.values())
    cuts: dict[str, Cut] = {}
    masters: dict[tuple[str, str | None, float | None], str] = {}
    versions: dict[str, PrefectFuture] = {}
    covers: dict[str, PrefectFuture] = {}
    upscalers: dict[str, str] = {}
    framed: dict[tuple[str, str, object], PrefectFuture] = {}  # (cut, aspect, size) -> cover
    for export in exports:
        if export.cut not in cuts:
            cuts[export.cut] = assemble_cut(run, clips, export.cut)
        cut = cuts[export.cut]
        lines = run.voices.get(export.lang or run.board.voice_language, {})
        sound = (export.cut, export.lang or run.board.voice_language, export.lufs)
        if sound not in masters:
            masters[sound] = master_cut(run, cut, lines, export.lufs)
        job = version_job(run.board, masters[sound], export, cut.durations,
                          run.profile.delivery, lines)  # fmt: skip
        versions[export.name] = export_version.submit(job)
        upscalers[export.name] = upscaled_by(job.upscaler, job.size is not None)
        framing = (export.cut, export.aspect, job.size)
        if framing not in framed:  # drawn from the clean picture: one per framing
            framed[framing] = make_cover.submit(
                cover_job(run.board, masters[sound], export.aspect, job.size)
            )
        covers[export.name] = framed[framing]
    first = exports[0]
    film = cuts[first.cut]
    return Delivery(
        film_key=versions[first.name].result(),
        cover_key=covers[first.name].result(),
        edit_key=film.edit_key,
        master_key=masters[(first.cut, first.lang or run.board.voice_language, first.lufs)],
        durations=film.durations,
        versions={name: future.result() for name, future in versions.items()},
        version_covers={name: future.result() for name, future in covers.items()},
        upscalers=upscalers,
    )


def assemble_cut(run: RunContext, clips: dict[str, str], cut: str) -> Cut:
    """The picture of one style of cut over the clips (and, when the backend made sound, the
    clips' sound laid on it as a stem): shared by every version of this cut."""
    board, music_key = run.board, run.music_key
    plan = cut_plan(board, cut, run.durations)
    if music_key and board.music and board.music.snap_cuts and cut == "fast":
        durations = snap_to_music(music_job(board, music_key, [d for d, _, _ in plan]))
        plan = [(d, t, length) for d, (_, t, length) in zip(durations, plan, strict=True)]
    edit = edit_job(board, clips, plan, run.profile.crf)
    edit_key = assemble_film(edit)
    found = Cut(edit_key=edit_key, durations=[d for d, _, _ in plan], clips=edit.clips,
                fps=edit.fps)  # fmt: skip
    if makes_sound(run.profile.video_backend) and (music_key or run.voices):
        found.clip_sound_key = clip_sound_stem(
            ClipStemJob(**found.clip_job(board.project).model_dump())
        )
    return found


def master_cut(
    run: RunContext, cut: Cut, lines: dict[str, SpokenLine], lufs: float | None
) -> str:
    """The cut with its sound in one language at one loudness: music, the lines placed on
    this cut and the clips' sound, mixed (the picture is stream-copied under it); the clips'
    sound alone without music or lines; the edit itself when there is no sound at all."""
    board = run.board
    master = master_job(board, cut.edit_key, run.music_key, cut.durations, lines,
                        target_lufs=lufs, clip_sound_key=cut.clip_sound_key)  # fmt: skip
    if master is not None:  # music, voice-over lines and/or the clips' sound
        return master_with_music(master)
    if makes_sound(run.profile.video_backend):  # neither music nor lines: the clips' own sound
        return master_with_clip_sound(cut.clip_job(board.project))
    return cut.edit_key
