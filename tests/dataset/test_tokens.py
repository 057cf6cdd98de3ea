"""CLIP token counts against transformers' CLIPTokenizer built from the same vocabulary."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wrapper.dataset.audit import recommend_max_token_length
from wrapper.dataset.tokens import (
    VOCAB_NAME,
    byte_alphabet,
    count_tokens,
    required_max_token_length,
    tokenizer,
    vocab_path,
)

CAPTIONS = [
    "a photo of a cat",
    "Hello,   WORLD!!  ",
    "naïve café – “quotes” ‘single’ 😀👍🏽 日本語のテキスト, Ελληνικά, русский текст",
    "<|endoftext|>x<|startoftext|> y",
    "&amp; &lt;tag&gt; don't it's we're I'LL you've",
    "e\u0301 \u00e9 x\u200by\ufeffz tab\tnew\nline\r\n ÆØÅ ß ſ ﬁ İ",
    "123,456.78 1e10 3/4 (parenthesis) [brackets] {braces} #hash @at $5 100% a+b=c",
    "mojibake: Ã©tÃ© â€œquotedâ€",
    "\x00\x1f\x7f control characters",
    "a woman wearing a long flowing red silk evening dress with a plunging neckline and thin straps, "
    "standing on a marble staircase in a grand baroque palace, golden hour light streaming through tall "
    "arched windows, soft shadows, shallow depth of field, 85mm lens, photorealistic, highly detailed "
    "fabric texture with subtle sheen and delicate pleats, elegant pose with one hand on the banister, "
    "hair in a loose chignon, pearl earrings, fashion editorial photography, vogue style, cinematic "
    "colour grading, warm tones, bokeh background with chandeliers, award-winning composition, 8k",
    " ".join(["supercalifragilisticexpialidocious", "антидисестаблишментарианизм", "🤖🎨🖼️"] * 40),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """transformers' slow CLIPTokenizer (what sd-scripts uses) from the same BPE file."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("ftfy")
    folder = tmp_path_factory.mktemp("clip")
    lines = gzip.decompress(vocab_path().read_bytes()).decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(byte_alphabet().values())
    pieces = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in lines]
    pieces += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({p: i for i, p in enumerate(pieces)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def test_known_ids_without_transformers():
    assert tokenizer().encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert vocab_path().name == VOCAB_NAME


@pytest.mark.parametrize("caption", CAPTIONS)
def test_counts_match_reference(reference, caption):
    ours = tokenizer().encode(caption)
    assert ours == reference(caption, add_special_tokens=False)["input_ids"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_random_text_matches_reference(reference, text):
    assert tokenizer().encode(text) == reference(text, add_special_tokens=False)["input_ids"]


def test_cut_words_follow_the_limits():
    words = ["red", "blue", "green", "cat", "dog"] * 50  # each is one token
    caption = " ".join(words[:160])
    result = count_tokens(caption)
    assert result.tokens == 160
    assert result.cut[75] == " ".join(words[75:160])
    assert result.cut[150] == " ".join(words[150:160])
    assert 225 not in result.cut
    assert count_tokens("").tokens == 0 and count_tokens("").cut == {}


@pytest.mark.parametrize(
    ("tokens", "need"), [(0, None), (75, None), (76, 150), (150, 150), (151, 225), (225, 225), (400, 225)]
)
def test_required_max_token_length(tokens, need):
    assert required_max_token_length(tokens) == need
    assert recommend_max_token_length([3, tokens, 1]) == need


def test_no_torch_and_no_package_import():
    code = (
        "import sys; from wrapper.dataset.tokens import tokenizer; tokenizer().count('a cat'); "
        "print(sorted(m for m in ('torch', 'mmseg', 'open_clip', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
