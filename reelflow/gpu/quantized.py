"""GGUF-quantized transformers: one more memory-plan choice.

Community GGUF files (Q8_0, Q5_K, Q4_K...) store a Flux or Wan transformer in a half to a
quarter of its bf16 size; diffusers reads them (`from_single_file` with a
`GGUFQuantizationConfig`) and dequantizes each layer's weights as it runs. The quantization
changes pixels, so a pinned GGUF file is in the job's key (`MemoryPins.gguf`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

#: the pipeline component a GGUF file replaces, by diffusers pipeline class prefix
TRANSFORMER_CLASSES = {"Flux": "FluxTransformer2DModel", "Wan": "WanTransformer3DModel",
                       "LTX2": "LTX2VideoTransformer3DModel", "LTX": "LTXVideoTransformer3DModel"}


def transformer_class(pipeline_class: str) -> str:
    for prefix, name in TRANSFORMER_CLASSES.items():
        if pipeline_class.startswith(prefix):
            return name
    raise ValueError(f"memory.gguf: a {pipeline_class or 'model'} has no transformer a GGUF "
                     "file can replace (Flux, Wan, LTX)")


def load_gguf_transformer(
    path: str | Path, pipeline_dir: str | Path, dtype: torch.dtype, class_name: str | None = None
) -> Any:
    """The transformer in the GGUF file `path`, configured like `pipeline_dir`'s own
    (`transformer/config.json`), computing in `dtype`; nothing is downloaded."""
    import json

    import diffusers
    from diffusers import GGUFQuantizationConfig

    folder = Path(pipeline_dir)
    if class_name is None:
        index = json.loads((folder / "model_index.json").read_text())
        class_name = transformer_class(index.get("_class_name", ""))
    cls = getattr(diffusers, class_name)
    return cls.from_single_file(
        str(path),
        quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
        config=str(folder),
        subfolder="transformer",
        torch_dtype=dtype,
        local_files_only=True,
    )


def is_quantized(pipe: Any) -> bool:
    """Whether one of the pipeline's models is quantized (a GGUF transformer): such a model
    cannot be cast to another dtype, which `from_pipe` always does."""
    return any(getattr(module, "hf_quantizer", None) is not None
               for module in pipe.components.values() if isinstance(module, torch.nn.Module))


def derive_pipeline(cls: Any, base: Any, dtype: torch.dtype, **components: Any) -> Any:
    """`cls` (img2img, inpaint, ControlNet) sharing `base`'s modules, like `cls.from_pipe(base,
    dtype=dtype, **components)`; with a quantized model the pipeline is built from the shared
    modules as they are (they already have the base's dtype), since `from_pipe` would cast it."""
    import inspect

    if not is_quantized(base):
        return cls.from_pipe(base, dtype=dtype, **components)
    parameters = inspect.signature(cls.__init__).parameters
    shared = {**base.components, **components}
    return cls(**{name: shared[name] for name in parameters if name in shared})
