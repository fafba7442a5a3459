"""The clips' own sound laid under the edit: each shot's audio where its picture is.

Shot ``i`` of the edit shows its clip's frames ``0 .. n_i`` from film frame ``S_i`` (a
transition into it blends its head over the previous clip's tail, and the cut point stays at
``S_i``: see :mod:`reelflow.editing.assemble`). So its sound is the clip's audio from the
clip's in-point, cut or silence-padded to ``n_i / fps`` seconds, and the shots' sounds are
joined end to end: the track lasts exactly as long as the picture. A shot without sound is
silence. The video stream is copied, never re-encoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reelflow.media.ffmpeg import PathLike, run

__all__ = ["ShotSound", "clip_sound_track", "lay_clip_sound"]

RATE = 48000


@dataclass(frozen=True)
class ShotSound:
    """One shot's place in the track: its audio (None: silence), where in it to start, and how
    long the shot lasts in the film."""

    audio: Path | None
    seconds: float
    start: float = 0.0


def _joined(shots: list[ShotSound], first_input: int) -> tuple[list[str], str]:
    """The inputs (from input index ``first_input``) and the filter graph that join the shots'
    sound end to end into ``[a]``."""
    inputs: list[str] = []
    chains: list[str] = []
    for index, shot in enumerate(shots):
        d = f"{shot.seconds:.6f}"
        if shot.audio is None:
            chains.append(f"aevalsrc=0|0:s={RATE}:d={d}[s{index}]")
            continue
        inputs += ["-i", str(shot.audio)]
        n = first_input + len(inputs) // 2 - 1
        chains.append(
            f"[{n}:a]atrim=start={shot.start:.6f}:duration={d},asetpts=PTS-STARTPTS,"
            f"aresample={RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"apad=whole_dur={d},atrim=duration={d}[s{index}]"
        )
    labels = "".join(f"[s{i}]" for i in range(len(shots)))
    chains.append(f"{labels}concat=n={len(shots)}:v=0:a=1[a]")
    return inputs, ";".join(chains)


def lay_clip_sound(
    video: PathLike, shots: list[ShotSound], out: PathLike, *, bitrate: str = "192k"
) -> Path:
    """``video`` with the shots' sound joined under it (replacing any audio), at ``out``."""
    video, out = Path(video), Path(out)
    inputs, graph = _joined(shots, first_input=1)
    tmp = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
    run(
        ["-i", str(video), *inputs, "-filter_complex", graph, "-map", "0:v:0", "-map", "[a]",
         "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate, "-movflags", "+faststart", str(tmp)],
        what=f"lay the clips' sound under {video.name}",
    )  # fmt: skip
    os.replace(tmp, out)
    return out


def clip_sound_track(shots: list[ShotSound], out: PathLike) -> Path:
    """The shots' sound joined end to end, alone: a stereo 48 kHz WAV stem (16-bit) as long as
    the picture, for the mix to take beside the voice and the music."""
    out = Path(out)
    inputs, graph = _joined(shots, first_input=0)
    tmp = out.with_name(out.stem + ".tmp.wav")
    run([*inputs, "-filter_complex", graph, "-map", "[a]", "-c:a", "pcm_s16le", str(tmp)],
        what="join the clips' sound into a stem")  # fmt: skip
    os.replace(tmp, out)
    return out
