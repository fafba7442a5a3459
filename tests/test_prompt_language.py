"""Prompts in another language than the text encoder's: counted properly, warned about in
`reelflow plan`, translated through the LLM when one is configured; the model's own tokenizer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from reelflow.llm import ChatClient, LLMConfig
from reelflow.render.jobs import ModelChoice, token_counter
from reelflow.script.translate import translate_for_encoder
from reelflow.storyboard import load_storyboard
from reelflow.storyboard.prompts import compose_prompt, count_tokens, language_warnings

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "su7-winter-spring.yaml"
ZH = (
    "一辆亮黄色的跑车在积雪覆盖的蜿蜒山路上疾驰，"
    "车头灯穿透飘落的雪花，远处是高耸的雪山和冰蓝色的天空"
)


def _chinese_board(tmp_path: Path) -> Path:
    data = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    data.pop("music", None)
    data["shots"] = data["shots"][:2]
    data["shots"][0]["description"] = ZH * 2  # ~100 characters
    data["shots"][1].pop("first_frame", None)
    data["shots"][1].pop("last_frame", None)
    data["aspect"], data["width"], data["height"] = "9:16", 720, 1280
    path = tmp_path / "zh.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_chinese_is_counted_per_character_and_what_is_cut_is_reported(tmp_path: Path) -> None:
    text = ZH * 2
    assert count_tokens(text, "sd15") >= len(text)  # not 1 token per run of Chinese
    board = load_storyboard(_chinese_board(tmp_path))
    composed = compose_prompt(board, board.shots[0], family="sd15")
    assert composed.token_count > 75, "a 100-character Chinese description is over one window"
    assert composed.fits  # kept whole: CLIP reads it window by window
    assert "s01-mountain-aerial" in language_warnings(board, "sd15")
    assert "s02-rear-closeup" not in language_warnings(board, "sd15")  # English shot


def test_plan_warns_about_chinese_prompts_for_an_english_encoder(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "plan", str(_chinese_board(tmp_path)),
         "--profile", "demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "REELFLOW_MODELS": str(tmp_path / "no-models")},  # the estimate
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: shot s01-mountain-aerial: the prompt is partly Chinese but" in done.stderr
    # what the encoder receives: every token, in CLIP windows (nothing cut mid-word)
    assert re.search(r"\n    clip-l: \d+ tokens \(estimated\), all of them, in \d windows? of 75\n",
                     done.stdout), done.stdout
    assert "72x128" in done.stdout  # portrait stills for the 9:16 board


def test_the_models_own_tokenizer_counts_when_it_is_a_real_one(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    from reelflow.imaging.tiny import tiny_clip_tokenizer

    tiny_dir = tmp_path / "tiny"
    tiny_clip_tokenizer().save_pretrained(str(tiny_dir / "tokenizer"))
    assert token_counter(ModelChoice(source=str(tiny_dir))) is None  # a toy vocabulary
    # a vocabulary big enough to count as real (no merges: it still spells words out)
    words = [f"w{i}" for i in range(1200)] + ["snowy", "mountain", "road", ","]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for word in words:
        vocab[word + "</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789,":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    real_dir = tmp_path / "real"
    CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77).save_pretrained(
        str(real_dir / "tokenizer")
    )
    count = token_counter(ModelChoice(source=str(real_dir)))
    assert count is not None
    text = "snowy mountain road"
    # the tokenizer's own count (one per letter without merges), not the word estimate
    assert count(text) == len(text.replace(" ", "")) and count_tokens(text) == 3


@pytest.mark.integration  # a loopback chat server
def test_chinese_prompts_are_translated_through_the_llm(tmp_path: Path) -> None:
    from tests.support.chat_server import ChatServer, Reply, Request

    def answer(request: Request) -> Reply:
        return Reply(content={"en": "a bright yellow sports car on a winding snowy road"})

    board = load_storyboard(_chinese_board(tmp_path))
    with ChatServer(responder=answer) as server:
        config = LLMConfig.model_validate(
            {"base_url": server.url, "model": "m", "api_key": SecretStr("k"), "timeout": 5.0}
        )
        cache: dict[str, str] = {}
        with ChatClient(config) as client:
            english, warnings = translate_for_encoder(board, client, cache)
            again, _ = translate_for_encoder(board, client, cache)
        assert len(server.requests) == 1  # the second pass comes from the cache
    assert warnings == [] and again == english
    assert english.shots[0].prompt == "a bright yellow sports car on a winding snowy road"
    assert english.shots[0].description == ZH * 2  # the storyboard's own text is kept
    assert english.shots[1].prompt is None  # English shots are left alone
    assert language_warnings(english, "sd15") == {}
    # without an LLM: the text stays, and the warning says so
    _, untranslated = translate_for_encoder(board, None)
    assert untranslated == ["shot s01-mountain-aerial: left in Chinese (no translation available)"]
