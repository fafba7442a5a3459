"""The models a machine already has: ComfyUI's and A1111/Forge's folders (and ComfyUI's
extra_model_paths.yaml), each file's kind and family read from its header, names resolving to
files for renders, `reelflow models`, and a GGUF-quantized transformer loaded by diffusers.

Real files written here (safetensors headers shaped like the real ones, a tiny Flux transformer
quantized to Q8_0 with the `gguf` package); nothing mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from reelflow.gpu.library import find_model, safetensors_header, scan
from reelflow.gpu.pins import MemoryPins
from reelflow.render import weights
from reelflow.render.jobs import image_job, resolve_model_path
from reelflow.render.profiles import get_profile
from reelflow.storyboard import parse_storyboard


def _weights(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: torch.zeros(shape) for name, shape in shapes.items()}, str(path))
    return path


def _tiny_flux_gguf(folder: Path) -> tuple[Path, Path, torch.nn.Module]:
    """A tiny Flux transformer, its config in a pipeline folder, and its weights as GGUF (Q8_0
    for the matrices whose rows split in 32-blocks, F32 for the rest)."""
    from diffusers import FluxTransformer2DModel

    from reelflow.imaging.tiny_flux import write_gguf

    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=32, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6),
    )
    pipeline = folder / "flux-pipeline"
    model.save_config(pipeline / "transformer")
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    out = write_gguf(model, folder / "ComfyUI" / "models" / "unet" / "flux-tiny-Q8_0.gguf")
    return out, pipeline, model


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("library")
    comfy, webui, forge = root / "ComfyUI", root / "webui", root / "forge"
    files = {
        "xl": _weights(comfy / "models" / "checkpoints" / "juggerXL.safetensors", {
            "model.diffusion_model.input_blocks.0.0.weight": (4, 4),
            "model.diffusion_model.label_emb.0.0.weight": (4, 4),
            "conditioner.embedders.1.model.ln_final.weight": (4,)}),
        "ink": _weights(comfy / "models" / "loras" / "ink.safetensors", {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8)}),
        "ae": _weights(comfy / "models" / "vae" / "ae.safetensors", {
            "encoder.conv_in.weight": (8, 3, 3, 3), "decoder.conv_in.weight": (8, 16, 3, 3),
            "decoder.conv_out.weight": (3, 8, 3, 3)}),
        "canny": _weights(comfy / "models" / "controlnet" / "canny.safetensors", {
            "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
            "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (8, 768)}),
        "face": _weights(comfy / "models" / "ipadapter" / "face.safetensors", {
            "image_proj.proj.weight": (8, 8), "ip_adapter.1.to_k_ip.weight": (8, 2048)}),
        # an extra_model_paths.yaml section pointing at a webui's LoRA folders
        "dune": _weights(webui / "models" / "Lora" / "dune.safetensors", {
            "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_down.weight": (4, 8),
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 8)}),
        # an A1111/Forge folder named by REELFLOW_A1111
        "sd15": _weights(forge / "models" / "Stable-diffusion" / "dreamy.safetensors", {
            "model.diffusion_model.input_blocks.0.0.weight": (4, 4),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": (4,)}),
    }
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n    base_path: ../webui\n    loras: |\n        models/Lora\n"
        "        models/LyCORIS\n    checkpoints: models/Stable-diffusion\n"
    )
    files["gguf"], files["pipeline"], _ = _tiny_flux_gguf(root)
    files["comfy"], files["forge"], files["models"] = comfy, forge, root / "reelflow-models"
    return files


@pytest.fixture
def env(machine: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("REELFLOW_MODELS", str(machine["models"]))
    monkeypatch.setenv("REELFLOW_COMFYUI", str(machine["comfy"]))
    monkeypatch.setenv("REELFLOW_A1111", str(machine["forge"]))
    monkeypatch.setenv("REELFLOW_WEIGHT_HASHES", str(tmp_path / "weight-hashes.json"))
    monkeypatch.setattr(weights, "_memo", None)
    return machine


def test_every_folder_is_found_with_kind_family_size_and_hash(env: dict[str, Path]) -> None:
    entries = {e.path: e for e in scan(hashes=True)}
    expect = {"xl": ("checkpoint", "sdxl", "comfyui"), "ink": ("lora", "sd15", "comfyui"),
              "ae": ("vae", "flux", "comfyui"), "canny": ("controlnet", "sd15", "comfyui"),
              "face": ("ip-adapter", "sdxl", "comfyui"),
              "dune": ("lora", "sdxl", "extra_model_paths"),
              "sd15": ("checkpoint", "sd15", "a1111"),
              "gguf": ("diffusion_model", "flux", "comfyui")}
    for name, (kind, family, tool) in expect.items():
        entry = entries[env[name]]
        assert (entry.kind, entry.family, entry.tool) == (kind, family, tool), name
        assert entry.size == env[name].stat().st_size
        assert entry.sha256 == hashlib.sha256(env[name].read_bytes()).hexdigest()
    assert len(safetensors_header(env["ink"])) == 1  # the header alone: names and shapes


def test_names_resolve_to_the_other_tools_files(env: dict[str, Path]) -> None:
    assert resolve_model_path("@models/ink") == str(env["ink"])
    assert resolve_model_path("@models/loras/ink.safetensors") == str(env["ink"])
    assert resolve_model_path("@models/Lora/dune.safetensors") == str(env["dune"])
    assert resolve_model_path("@models/lora/dune.safetensors") == str(env["dune"])
    assert resolve_model_path("dreamy") == str(env["sd15"])  # a bare checkpoint name
    assert resolve_model_path("@models/nowhere") == str(env["models"] / "nowhere")
    assert resolve_model_path("org/hub-model") == "org/hub-model"
    assert find_model("ae.safetensors").kind == "vae"
    assert find_model("face").kind == "ip-adapter"


def test_reelflow_models_lists_and_shows_what_a_storyboard_names(
    env: dict[str, Path], tmp_path: Path
) -> None:
    from cli.main import reelflow

    board = tmp_path / "board.yaml"
    board.write_text(
        "title: Library\nproject: library\nstyle:\n  model: dreamy\n"
        "  loras: [{name: ink, path: '@models/ink', weight: 0.8},"
        " {name: gone, path: '@models/loras/gone.safetensors', weight: 0.5}]\n"
        "shots:\n  - id: a\n    description: a harbour\n    duration: 1\n"
    )
    result = CliRunner().invoke(reelflow, ["models", str(board)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ink = next(i for i, line in enumerate(lines) if line.endswith(str(env["ink"])))
    assert lines[ink].split()[:2] == ["lora", "sd15"]
    assert hashlib.sha256(env["ink"].read_bytes()).hexdigest()[:12] in lines[ink]
    assert "<- lora ink: @models/ink" in lines[ink + 1]
    dreamy = next(i for i, line in enumerate(lines) if line.endswith(str(env["sd15"])))
    assert "<- style.model: dreamy" in lines[dreamy + 1]
    assert "lora gone: @models/loras/gone.safetensors: NOT FOUND in any model folder" in lines


def test_a_gguf_transformer_loads_quantized_and_is_keyed_by_its_content(
    env: dict[str, Path],
) -> None:
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from reelflow.gpu.quantized import load_gguf_transformer

    _, _, reference = _tiny_flux_gguf(env["pipeline"].parent / "again")
    model = load_gguf_transformer(env["gguf"], env["pipeline"], torch.float32)
    quantized = [n for n, p in model.named_parameters() if isinstance(p, GGUFParameter)]
    assert "transformer_blocks.0.attn.to_q.weight" in quantized
    inputs = {"hidden_states": torch.randn(1, 16, 32),
              "encoder_hidden_states": torch.randn(1, 8, 32),
              "pooled_projections": torch.randn(1, 32), "timestep": torch.tensor([0.5]),
              "img_ids": torch.zeros(16, 3), "txt_ids": torch.zeros(8, 3)}
    with torch.no_grad():
        exact, q8 = reference(**inputs).sample, model(**inputs).sample
    error = (exact - q8).abs().max().item()
    assert 0 < error < 0.05 * exact.abs().mean().item() + 0.05  # Q8_0: close, not exact

    board = parse_storyboard("title: G\nproject: g\nstyle: {model: m}\n"
                             "shots:\n  - id: a\n    description: x\n    duration: 1\n")
    plain = image_job(board, board.shots[0], get_profile("test"))
    pinned = image_job(board, board.shots[0], get_profile("test").model_copy(
        update={"memory": MemoryPins(gguf="@models/flux-tiny-Q8_0")}))
    assert pinned.model.memory["gguf_sha256"] == hashlib.sha256(
        env["gguf"].read_bytes()).hexdigest()
    assert pinned.spec_hash() != plain.spec_hash()
