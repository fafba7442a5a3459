"""Edit and finishing: ffmpeg graphs over approved clips, one module per concept.

Plain Python (no Prefect); ffmpeg does the pixel work and frames stream, so nothing holds a whole
video in memory. Import the module you need (this package imports nothing heavy itself):

- :mod:`~reelflow.media.ffmpeg`     running ffmpeg with clear, redacted errors; ``iter_frames``
- :mod:`~reelflow.editing.assemble`   ``AssemblyClip``, ``assemble``: frame-exact timeline with
  cut / crossfade / dip-to-black / wipe / slide transitions, total = sum of shot durations
- :mod:`~reelflow.editing.waste`      ``detect_waste``, ``trim_clip``: black/frozen heads and tails
- :mod:`~reelflow.editing.beats`      ``detect_beats``, ``snap_cuts``: cut points on the music
- :mod:`~reelflow.editing.audio`      ``mux_music``: fitted, faded, -14 LUFS music bed; ``loudness``
- :mod:`~reelflow.editing.subtitles`  ``Caption``; SRT/ASS; burned in (libass) or soft tracks
- :mod:`~reelflow.editing.enhance`    ``enhance``: upscale + sharpen, denoise, 48/60 fps
- :mod:`~reelflow.editing.versions`   ``export_version``: 16:9 / 9:16 / 1:1, subject-following
  crop, H.264 / H.265 / AV1
- :mod:`~reelflow.editing.cover`      ``best_frame``, ``render_title``, ``make_cover``
- :mod:`~reelflow.editing.fonts`      the pip-installed CJK font (Noto Sans SC)
"""
