"""Facts that depend on this machine: where models live, which base model and LoRA files a
storyboard names, the model's tokenizer, the weights' content hashes. Jobs name weights
machine-independently (`@models/...`) and carry their content hashes, so keys match everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from reelflow.gpu.library import library_path, models_dir
from reelflow.render import weights
from reelflow.render.jobs.specs import (
    ClipJob,
    FrameJob,
    IPAdapterChoice,
    Job,
    LoraChoice,
    ModelChoice,
)
from reelflow.render.profiles import RenderProfile
from reelflow.storyboard import LoraRef, Storyboard
from reelflow.storyboard.prompts import TokenCounter

MODELS_PREFIX = "@models/"
#: image model source of the model-free storyboard-panel backend (reelflow/imaging/previz.py)
PREVIZ = "previz"




def resolve_model_path(source: str) -> str:
    """`@models/x` names a file in this machine's models folder; jobs keep the short form so
    that their hashes (and object keys) are the same on every machine. Not there, `x` (and a
    bare model name that is no local path) is looked up in the folders of ComfyUI and
    A1111/Forge (REELFLOW_COMFYUI, REELFLOW_A1111; see reelflow/gpu/library.py) by path or
    name: `@models/loras/ink.safetensors`, `@models/ink`, `juggernautXL`."""
    if source.startswith(MODELS_PREFIX):
        name = source.removeprefix(MODELS_PREFIX)
        local = models_dir() / name
        if local.exists():
            return str(local)
        return library_path(name) or str(local)
    if "/" not in source and "\\" not in source and not Path(source).exists():
        return library_path(source) or source
    return source


J = TypeVar("J", bound=Job)


def identify_weights(job: J, facts: RunFacts | None = None) -> J:
    """Fill the content hash of every weight the job names (model, LoRAs, IP-Adapter,
    ControlNet, video model) that is on this machine; the spec hash then uses the hash
    instead of the path. With the run's `facts`, each weight is hashed once per run.
    Hashes already set are kept (a job built elsewhere names what it was keyed with)."""
    content_hash = facts.weight_hash if facts is not None else weight_hash

    def known(source: str | None, current: str | None) -> str | None:
        return current or content_hash(source)

    updates: dict[str, Any] = {}
    model = getattr(job, "model", None)
    if isinstance(model, ModelChoice):
        memory = dict(model.memory)
        if memory.get("gguf"):  # a pinned GGUF transformer: keyed by its content
            memory["gguf_sha256"] = known(memory["gguf"], memory.get("gguf_sha256"))
        updates["model"] = model.model_copy(update={
            "sha256": known(model.source, model.sha256), "memory": memory})
    if getattr(job, "loras", None):
        updates["loras"] = [
            lora.model_copy(update={"sha256": known(lora.path, lora.sha256)})
            for lora in job.loras  # type: ignore[attr-defined]
        ]
    ip_adapter = getattr(job, "ip_adapter", None)
    if isinstance(ip_adapter, IPAdapterChoice):
        updates["ip_adapter"] = ip_adapter.model_copy(
            update={"sha256": known(ip_adapter.path, ip_adapter.sha256)}
        )
    if isinstance(job, FrameJob) and job.controlnet:
        updates["controlnet_sha256"] = known(job.controlnet, job.controlnet_sha256)
    if isinstance(job, ClipJob) and isinstance(job.backend_options.get("model"), str):
        updates["model_sha256"] = known(job.backend_options["model"], job.model_sha256)
    if isinstance(job, ClipJob) and isinstance(job.backend_options.get("upsampler"), str):
        updates["upsampler_sha256"] = known(job.backend_options["upsampler"],
                                            job.upsampler_sha256)  # fmt: skip
    return job.model_copy(update=updates)


def weight_hash(source: str | None) -> str | None:
    """The content hash of a weight source (`@models/...`, a path, a cached hub id) on this
    machine; None when it is not here (the job is then keyed by its name)."""
    return weights.try_content_hash(resolve_model_path(source) if source else None)


#: a tokenizer with fewer entries is a toy (the tiny test models' character-level one): its
#: counts say nothing about what a real encoder cuts, so the estimate is used instead
MIN_REAL_VOCAB = 1000


@lru_cache(maxsize=16)
def _tokenizer_counter(path: str, family: str) -> TokenCounter | None:
    folder = Path(path) / ("tokenizer_2" if family == "flux" else "tokenizer")
    if not folder.is_dir():
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 - no usable tokenizer: the estimate stands in
        return None
    if len(tokenizer) < MIN_REAL_VOCAB:
        return None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    return count


def token_counter(model: ModelChoice) -> TokenCounter | None:
    """The model's own tokenizer as a token counter, when the model is a local diffusers folder
    with a real tokenizer; None (use the estimate) otherwise."""
    if model.source == PREVIZ:
        return None
    path = resolve_model_path(model.source)
    if not Path(path).is_dir():
        return None
    return _tokenizer_counter(path, model.family)


def model_choice(
    storyboard: Storyboard, profile: RenderProfile, base_dir: Path | None = Path(".")
) -> ModelChoice:
    """The base model of a job. A storyboard's model *path* resolves as `validate` checked it:
    against the storyboard's folder (`base_dir`), not the worker's cwd; from the bucket
    (`base_dir` None), inside the machine's models folder. Hub ids and names pass as they are."""
    source = profile.image_model or model_source(storyboard.style.model, base_dir)
    if source == "tiny":
        source = f"{MODELS_PREFIX}tiny-sd"
    return ModelChoice(
        family=profile.image_family or guess_family(storyboard.style.model),
        source=source,
        dtype=profile.dtype,
        device=profile.device,
        memory=profile.memory.job_options() if profile.memory else {},
    )


def model_source(value: str, base_dir: Path | None) -> str:
    """`style.model` as the renderer loads it (see model_choice); InputError when it leaves the
    storyboard's folder or the models folder."""
    from reelflow.errors import InputError
    from reelflow.storyboard.files import _looks_like_path, in_models_folder, resolve_local

    if value.startswith(MODELS_PREFIX) or not _looks_like_path(value):
        return value
    try:
        if base_dir is None:
            return in_models_folder(value)
        return str(resolve_local(value, base_dir, must_exist=False))
    except ValueError as exc:
        raise InputError(f"style.model: {exc}") from None


def guess_family(model: str) -> Literal["sd15", "sdxl", "flux"]:
    lowered = model.lower()
    if "flux" in lowered:
        return "flux"
    if "xl" in lowered:
        return "sdxl"
    return "sd15"


def lora_choices(
    refs: list[LoraRef], profile: RenderProfile, base_dir: Path | None
) -> list[LoraChoice]:
    """LoRA files for a job; a storyboard's own paths stay inside its folder (see
    storyboard/files.py); a storyboard from the bucket (`base_dir` None) names files in the
    renderer's models folder."""
    from reelflow.errors import InputError
    from reelflow.storyboard.files import in_models_folder, resolve_local

    out: list[LoraChoice] = []
    for ref in refs:
        try:
            if profile.tiny_loras:
                path = f"{MODELS_PREFIX}loras/{ref.name}.safetensors"
            elif base_dir is None:  # a storyboard from the bucket: the models folder only
                path = in_models_folder(ref.path)
            else:
                path = str(resolve_local(ref.path, base_dir, must_exist=False))
        except ValueError as exc:
            raise InputError(f"lora {ref.name}: {exc}") from None
        out.append(LoraChoice(name=ref.name, path=path, weight=ref.weight))
    return out


@dataclass
class RunFacts:
    """What a run's jobs need from this machine, resolved once per run (not once per shot):
    the base model (with its content hash), its tokenizer as a token counter, the LoRA files
    the storyboard's references name, the weights' content hashes, and the cast's versions.

    The flow, render-shot's parent and the benchmark's plain loop build it once
    (`resolve_run_facts`) and hand it to every builder. LoRAs and hashes are filled on first
    use: a run that never needs a LoRA (previz panels) never resolves one.
    """

    profile: RenderProfile
    base_dir: Path | None
    model: ModelChoice
    count: TokenCounter | None
    cast: dict[str, str] = field(default_factory=dict)  # library character -> version
    hashes: dict[str, str | None] = field(default_factory=dict)  # weight source -> content
    loras: dict[tuple[str, str, float], LoraChoice] = field(default_factory=dict)

    def weight_hash(self, source: str | None) -> str | None:
        if not source:
            return None
        if source not in self.hashes:
            self.hashes[source] = weight_hash(source)
        return self.hashes[source]

    def lora_choices(self, refs: list[LoraRef]) -> list[LoraChoice]:
        """`lora_choices` of the refs, each LoRA file resolved and hashed once per run."""
        out = []
        for ref in refs:
            key = (ref.name, ref.path, ref.weight)
            if key not in self.loras:
                (choice,) = lora_choices([ref], self.profile, self.base_dir)
                self.loras[key] = choice.model_copy(
                    update={"sha256": self.weight_hash(choice.path)}
                )
            out.append(self.loras[key])
        return out


def resolve_run_facts(
    storyboard: Storyboard,
    profile: RenderProfile,
    base_dir: Path | None = Path("."),
    *,
    cast: dict[str, str] | None = None,
) -> RunFacts:
    """The run's facts for `storyboard` rendered with `profile` (see `RunFacts`); `base_dir` is
    where its file references resolve (None: a storyboard from the bucket). InputError when
    the storyboard's model path leaves its folder or the models folder."""
    model = model_choice(storyboard, profile, base_dir)
    facts = RunFacts(
        profile=profile,
        base_dir=base_dir,
        model=model,
        count=token_counter(model),
        cast=dict(cast or {}),
    )
    facts.model = model.model_copy(update={"sha256": facts.weight_hash(model.source)})
    return facts
