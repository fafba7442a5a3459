"""Music for the film: cut to the picture, faded out, loudness-normalised (EBU R128).

Streaming platforms normalise to about -14 LUFS integrated; delivering at that level means the
mix is not turned down (or up, with its peaks squashed) by the platform. ``loudnorm`` runs in
two passes: the first measures the *finished* music bed (trimmed to the film, faded out), the
second applies one linear gain from those measurements (``linear=true``), which keeps the
fade's shape and the music's dynamics instead of the single-pass mode's dynamic compression.
The video stream is copied, never re-encoded.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from reelflow.media.ffmpeg import PathLike, run
from reelflow.media.probe import probe

__all__ = ["bed_filter", "loudness", "loudnorm_measure", "mux_music"]

_JSON_RE = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.S)


def bed_filter(duration: float, fade_out: float, music_start: float) -> str:
    fade_start = max(0.0, duration - fade_out)
    return (
        f"atrim=start={music_start:.6f},asetpts=PTS-STARTPTS,apad,"
        f"atrim=end={duration:.6f},afade=t=out:st={fade_start:.6f}:d={fade_out:.6f}"
    )


def loudnorm_measure(args: list[str], what: str, target: float, tp: float, lra: float) -> dict:
    stderr = run(
        [*args[:-1], args[-1] + f",loudnorm=I={target}:TP={tp}:LRA={lra}:print_format=json",
         "-f", "null", "-"],
        what=what,
        loglevel="info",
    )  # fmt: skip
    match = _JSON_RE.search(stderr)
    if match is None:
        raise RuntimeError(f"{what}: loudnorm printed no measurements")
    return json.loads(match.group(0))


def loudness(path: PathLike) -> float:
    """Integrated loudness (LUFS) of ``path``'s audio, measured by ffmpeg's ``ebur128``."""
    stderr = run(
        ["-i", str(path), "-map", "0:a:0", "-af", "ebur128=framelog=quiet", "-f", "null", "-"],
        what=f"measure loudness of {Path(path).name}",
        loglevel="info",
    )
    found = re.findall(r"I:\s*(-?[\d.]+|-inf)\s*LUFS", stderr)
    if not found:
        raise RuntimeError(f"ebur128 reported no loudness for {path}")
    return float(found[-1])


def mux_music(
    video: PathLike,
    music: PathLike,
    out: PathLike,
    *,
    fade_out: float = 2.0,
    target_lufs: float = -14.0,
    true_peak: float = -1.0,
    lra: float = 11.0,
    music_start: float = 0.0,
    bitrate: str = "192k",
) -> Path:
    """Lay ``music`` under ``video`` (replacing any audio) and write ``out``.

    The music starts ``music_start`` seconds in, is cut or silence-padded to the film's exact
    length, fades out over its last ``fade_out`` seconds and is normalised to ``target_lufs``.
    """
    video, music, out = Path(video), Path(music), Path(out)
    duration = probe(video).duration
    fade_out = min(fade_out, duration)
    bed = bed_filter(duration, fade_out, music_start)
    m = loudnorm_measure(
        ["-i", str(music), "-vn", "-af", bed],
        f"measure loudness of {music.name}",
        target_lufs,
        true_peak,
        lra,
    )
    norm = (
        f"loudnorm=I={target_lufs}:TP={true_peak}:LRA={lra}:linear=true:"
        f"measured_I={m['input_i']}:measured_TP={m['input_tp']}:measured_LRA={m['input_lra']}:"
        f"measured_thresh={m['input_thresh']}:offset={m['target_offset']},aresample=48000"
    )
    tmp = out.with_name(out.stem + ".tmp" + (out.suffix or ".mp4"))
    run(
        ["-i", str(video), "-i", str(music), "-filter_complex", f"[1:a]{bed},{norm}[a]",
         "-map", "0:v:0", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate,
         "-t", f"{duration:.6f}", "-movflags", "+faststart", str(tmp)],
        what=f"mux music {music.name} under {video.name}",
    )  # fmt: skip
    os.replace(tmp, out)
    return out
