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

__all__ = ["ShotSound", "lay_clip_sound"]

RATE = 48000


@dataclass(frozen=True)
class ShotSound:
    """One shot's place in the track: its audio (None: silence), where in it to start, and how
    long the shot lasts in the film."""

    audio: Path | None
    seconds: float
    start: float = 0.0


def lay_clip_sound(
    video: PathLike, shots: list[ShotSound], out: PathLike, *, bitrate: str = "192k"
) -> Path:
    """``video`` with the shots' sound joined under it (replacing any audio), at ``out``."""
    video, out = Path(video), Path(out)
    inputs: list[str] = ["-i", str(video)]
    chains: list[str] = []
    for index, shot in enumerate(shots):
        d = f"{shot.seconds:.6f}"
        if shot.audio is None:
            chains.append(f"aevalsrc=0|0:s={RATE}:d={d}[s{index}]")
            continue
        inputs += ["-i", str(shot.audio)]
        n = len(inputs) // 2 - 1
        chains.append(
            f"[{n}:a]atrim=start={shot.start:.6f}:duration={d},asetpts=PTS-STARTPTS,"
            f"aresample={RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"apad=whole_dur={d},atrim=duration={d}[s{index}]"
        )
    labels = "".join(f"[s{i}]" for i in range(len(shots)))
    chains.append(f"{labels}concat=n={len(shots)}:v=0:a=1[a]")
    tmp = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
    run(
        [*inputs, "-filter_complex", ";".join(chains), "-map", "0:v:0", "-map", "[a]",
         "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate, "-movflags", "+faststart", str(tmp)],
        what=f"lay the clips' sound under {video.name}",
    )  # fmt: skip
    os.replace(tmp, out)
    return out
