"""Tiny CLIP-format tokenizers, learned offline from a fashion vocabulary (sd-scripts loads them as CLIP's).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from wrapper.dataset.tokens import byte_alphabet, merge_pair
from wrapper.demo.cache import fresh_folder
from wrapper.demo.photos import WORDS, caption

TOKENIZER_L = "openai_clip-vit-large-patch14"


TOKENIZER_G = "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k"


N_MERGES = 190


BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _symbols(word: str) -> tuple[str, ...]:
    table = byte_alphabet()
    chars = [table[b] for b in word.encode("utf-8")]
    return (*chars[:-1], chars[-1] + "</w>")


def learn_merges(text: str, n: int = N_MERGES) -> list[tuple[str, str]]:
    """Learn up to `n` BPE merges from `text`, most frequent pair first, ties broken alphabetically."""
    words = Counter(re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower()))
    seqs = {_symbols(w): c for w, c in words.items()}
    known = set(byte_alphabet().values())
    known |= {s + "</w>" for s in known}
    merges: list[tuple[str, str]] = []
    while len(merges) < n:
        pairs: Counter[tuple[str, str]] = Counter()
        for seq, count in seqs.items():
            for pair in zip(seq, seq[1:], strict=False):
                if "".join(pair) not in known:  # one merge per token keeps ids and merges aligned
                    pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        known.add("".join(best))
        seqs = {tuple(merge_pair(seq, best)): c for seq, c in seqs.items()}
    return merges


def clip_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's id layout: 256 bytes, the same with `</w>`, the merges, then BOS and EOS as the top ids."""
    base = list(byte_alphabet().values())
    tokens = [*base, *(b + "</w>" for b in base), *("".join(m) for m in merges), BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}


def _corpus() -> str:
    return " ".join([w for words in WORDS.values() for w in words] * 3 + [caption(i) for i in range(40)])


def write_clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> Path:
    """Write a CLIPTokenizer (vocab.json, merges.txt, configs) into `folder`."""
    merges = learn_merges(_corpus())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(clip_vocab(merges), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    config = {
        **special,
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "tokenizer_class": "CLIPTokenizer",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def build_tokenizers(cache_dir: Path) -> Path:
    """Write the tokenizers sd-scripts reads with `--tokenizer_cache_dir cache_dir`; return cache_dir.

    The bigG one pads with "!" (id 0), the pad id sd-scripts forces on SDXL's second tokenizer.
    A folder that already holds a tokenizer is left alone.
    """
    cache_dir = Path(cache_dir)
    for name, pad in ((TOKENIZER_L, EOS), (TOKENIZER_G, "!")):
        dest = cache_dir / name
        if all((dest / f).is_file() for f in ("vocab.json", "merges.txt", "tokenizer_config.json")):
            continue
        with fresh_folder(dest, {"kind": "tokenizer", "pad": pad}) as tmp:
            write_clip_tokenizer(tmp, pad_token=pad)
    return cache_dir
