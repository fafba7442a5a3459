"""Images with diffusers: resident pipelines, generation operations and quality checks.

- `models`: `ModelSource` (directory, single file or cached hub id; never downloads), `LoraSpec`
- `pipelines`: `PipelineCache` / `get_pipeline_cache()`, `apply_loras`
- `generate`: `ImageSpec`, `generate_variants`, `hires_fix`, `restyle_canny`, `inpaint`,
  `outpaint`, `img2img_from_reference`
- `checks`: `is_blank`, `sharpness`, `palette_score`, `character_consistency`, `contact_sheet`
- `tiny`: tiny models built from configs, for tests and the offline demo

Submodules are imported explicitly: importing diffusers takes seconds, and `checks` needs none
of it.
"""
