"""Edit steps, one module each: assembly (the film from cached parts), cover, music (the
storyboard's files, a generated bed, beats, the master) and the delivered versions."""

from reelflow.render.edit.assembly import (
    ANALYSIS_VERSION,
    MASTER_PRESET,
    MAX_TRIM,
    PART_PRESET,
    assemble_film,
    edit_trims,
    film_parts,
    recorded_parts,
)
from reelflow.render.edit.cover import make_cover
from reelflow.render.edit.music import (
    generate_music_bed,
    master_with_music,
    snap_to_music,
    store_input,
)
from reelflow.render.edit.sound import clip_sound_stem, master_with_clip_sound
from reelflow.render.edit.speech import store_take, synthesize_line
from reelflow.render.edit.versions import export_version

__all__ = [
    "ANALYSIS_VERSION", "MASTER_PRESET", "MAX_TRIM", "PART_PRESET", "assemble_film",
    "clip_sound_stem", "edit_trims", "generate_music_bed",
    "export_version", "film_parts", "make_cover", "master_with_clip_sound", "master_with_music",
    "recorded_parts", "snap_to_music", "store_input", "store_take", "synthesize_line",
]  # fmt: skip
