"""Planning: turn (storyboard, profile, reviewer notes) into small, hashable jobs.

A job holds everything that decides its output and nothing else, so its hash is the object key of
what it makes and the cache key of the task that makes it. Changing one shot's prompt changes that
shot's jobs only; every other shot's jobs, and so their keys and cache entries, stay the same.

- `specs`: the job types and their output keys;
- `exports`: delivered versions (`--export`) and cut plans;
- `resolve`: what depends on this machine (models folder, tokenizer, LoRA files, weight hashes),
  resolved once per run into `RunFacts`;
- `builders`: storyboard + profile + run facts -> jobs.
"""

from reelflow.render.jobs.builders import (
    SIZE_MULTIPLE,
    caption_cues,
    clip_job,
    cover_job,
    edit_job,
    frame_job,
    frame_refs,
    generation_size,
    hires_job,
    image_job,
    ip_adapter_choice,
    lora_names,
    master_job,
    music_bed_job,
    music_job,
    needs_image,
    panel_spec,
    plan_render,
    profile_upscaler,
    retouch_job,
    shot_characters,
    shot_loras,
    shot_seed,
    shot_video,
    speech_jobs,
    still_plan,
    version_job,
    video_options,
)
from reelflow.render.jobs.exports import (
    DELIVERY_SIZES,
    EXPORT_FPS,
    EXPORT_MAX_PIXELS,
    EXPORT_MAX_SIDE,
    Delivery,
    ExportSpec,
    cut_plan,
    default_export,
    parse_export,
)
from reelflow.render.jobs.resolve import (
    MIN_REAL_VOCAB,
    MODELS_PREFIX,
    PREVIZ,
    RunFacts,
    identify_weights,
    lora_choices,
    model_choice,
    model_source,
    models_dir,
    resolve_model_path,
    resolve_run_facts,
    token_counter,
)
from reelflow.render.jobs.specs import (
    CaptionCue,
    ClipJob,
    CoverJob,
    EditClip,
    EditJob,
    FrameJob,
    HiresJob,
    ImageJob,
    IPAdapterChoice,
    Job,
    LoraChoice,
    MasterJob,
    ModelChoice,
    MusicBedJob,
    MusicJob,
    PanelSpec,
    RenderPlan,
    RetouchJob,
    SpeechJob,
    SpokenLine,
    StillPlan,
    VersionJob,
    VoiceClip,
)

__all__ = [
    "DELIVERY_SIZES", "Delivery", "EXPORT_FPS", "EXPORT_MAX_PIXELS", "EXPORT_MAX_SIDE",
    "MIN_REAL_VOCAB", "MODELS_PREFIX",
    "PREVIZ", "SIZE_MULTIPLE", "CaptionCue", "ClipJob", "CoverJob", "EditClip", "EditJob",
    "ExportSpec", "FrameJob", "HiresJob", "IPAdapterChoice", "ImageJob", "Job", "LoraChoice",
    "MasterJob", "ModelChoice", "MusicBedJob", "MusicJob", "PanelSpec", "RenderPlan",
    "RetouchJob", "RunFacts",
    "SpeechJob", "SpokenLine", "StillPlan", "VersionJob", "VoiceClip",
    "caption_cues", "clip_job", "cover_job", "cut_plan",
    "default_export", "edit_job", "frame_job", "frame_refs", "generation_size", "hires_job",
    "identify_weights", "image_job", "ip_adapter_choice", "lora_choices", "lora_names",
    "master_job", "model_choice", "model_source", "models_dir", "music_bed_job", "music_job",
    "needs_image",
    "panel_spec",
    "parse_export", "plan_render", "resolve_model_path", "resolve_run_facts", "retouch_job",
    "shot_characters", "shot_loras", "shot_seed", "shot_video", "speech_jobs", "still_plan",
    "token_counter", "version_job", "video_options", "profile_upscaler",
]
