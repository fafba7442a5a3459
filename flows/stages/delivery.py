"""Stage 6: delivery. The edit of each style of cut, its music master, every version asked for
(framing, codec, captions) and a cover for each, drawn from the clean master.

Names keep their meaning: the *edit* is the assembled picture, the *master* is the edit with
its music (the edit itself when there is none), the *film* is the delivered version — with the
captions the storyboard asks for — that `--out` saves as final.mp4.
"""

from __future__ import annotations

from prefect.futures import PrefectFuture
from pydantic import BaseModel

from flows.stages.run import RunContext
from reelflow.render.edit.sound import makes_sound
from reelflow.render.jobs import (
    ExportSpec,
    cover_job,
    cut_plan,
    default_export,
    edit_job,
    master_job,
    music_job,
    version_job,
)
from reelflow.render.jobs.specs import ClipSoundJob
from tasks.edit import (
    assemble_film,
    export_version,
    make_cover,
    master_with_clip_sound,
    master_with_music,
    snap_to_music,
)


class Cut(BaseModel):
    edit_key: str
    master_key: str
    durations: list[float]


class Delivery(BaseModel):
    film_key: str  # the first version: what the storyboard asked for, captions included
    cover_key: str
    edit_key: str
    master_key: str
    durations: list[float]  # the film's shot durations
    versions: dict[str, str]  # export name -> key
    version_covers: dict[str, str]


def deliver(run: RunContext, clips: dict[str, str], exports: list[ExportSpec] | None) -> Delivery:
    # a version asked for twice is made once (its name holds every setting of ExportSpec)
    exports = list({export.name: export for export in exports or [default_export(run.board)]}
                   .values())  # fmt: skip
    cuts: dict[str, Cut] = {}
    versions: dict[str, PrefectFuture] = {}
    covers: dict[str, PrefectFuture] = {}
    framed: dict[tuple[str, str, object], PrefectFuture] = {}  # (cut, aspect, size) -> cover
    for export in exports:
        if export.cut not in cuts:
            cuts[export.cut] = assemble_cut(run, clips, export.cut)
        cut = cuts[export.cut]
        job = version_job(run.board, cut.master_key, export, cut.durations,
                          run.profile.delivery, run.lines)
        versions[export.name] = export_version.submit(job)
        framing = (export.cut, export.aspect, job.size)
        if framing not in framed:
            framed[framing] = make_cover.submit(
                cover_job(run.board, cut.master_key, export.aspect, job.size)
            )
        covers[export.name] = framed[framing]
    first = exports[0]
    film = cuts[first.cut]
    return Delivery(
        film_key=versions[first.name].result(),
        cover_key=covers[first.name].result(),
        edit_key=film.edit_key,
        master_key=film.master_key,
        durations=film.durations,
        versions={name: future.result() for name, future in versions.items()},
        version_covers={name: future.result() for name, future in covers.items()},
    )


def assemble_cut(run: RunContext, clips: dict[str, str], cut: str) -> Cut:
    """The edit of one style of cut over the clips, with its sound: the music bed and the
    voice-over lines placed on this cut (the picture is stream-copied under it)."""
    board, music_key = run.board, run.music_key
    plan = cut_plan(board, cut, run.durations)
    if music_key and board.music and board.music.snap_cuts and cut == "fast":
        durations = snap_to_music(music_job(board, music_key, [d for d, _, _ in plan]))
        plan = [(d, t, length) for d, (_, t, length) in zip(durations, plan, strict=True)]
    edit = edit_job(board, clips, plan, run.profile.crf)
    edit_key = assemble_film(edit)
    durations = [d for d, _, _ in plan]
    master = master_job(board, edit_key, music_key, durations, run.lines)
    master_key = edit_key
    if master is not None:  # music and/or voice-over lines
        master_key = master_with_music(master)
    elif makes_sound(run.profile.video_backend):  # neither: the clips' own sound
        master_key = master_with_clip_sound(
            ClipSoundJob(project=board.project, edit_key=edit_key, clips=edit.clips, fps=edit.fps)
        )
    return Cut(edit_key=edit_key, master_key=master_key, durations=durations)
