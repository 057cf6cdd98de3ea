"""Exact CLIP token counts for captions, without torch and without downloads.

SD1.x, SD2.x and both SDXL text encoders use the same byte-level BPE (OpenAI CLIP's
`bpe_simple_vocab_16e6.txt.gz`); sd-scripts tokenises captions with transformers' slow
`CLIPTokenizer` (library/strategy_sd.py, strategy_sdxl.py). This module reproduces that
tokenizer: ftfy repair, whitespace squeeze, lower-casing, the CLIP split pattern, then BPE.
Like transformers (and unlike OpenAI's own code) it does not unescape HTML entities.

The vocabulary file is read from an installed package that ships it, without importing the
package: mmsegmentation (`mmseg/utils/`, no torch dependency) or open_clip_torch.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from wrapper.errors import GazeError

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# (import name, folder inside the package) of packages known to ship the file.
VOCAB_SOURCES = (("mmseg", "utils"), ("open_clip", ""))
SPECIAL = ("<|startoftext|>", "<|endoftext|>")
LIMITS = (75, 150, 225)  # sd-scripts: max_token_length None, 150, 225 (BOS/EOS not counted)
_MERGES = 49152 - 256 - 2  # CLIP uses the first 48894 merges of the file
_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def vocab_path() -> Path:
    """Find the CLIP BPE file in an installed package, or explain how to get one."""
    for module, folder in VOCAB_SOURCES:
        spec = importlib.util.find_spec(module)  # locates the package without importing it
        for root in (spec.submodule_search_locations or []) if spec else []:
            path = Path(root, folder, VOCAB_NAME)
            if path.is_file():
                return path
    raise GazeError(
        f"the CLIP vocabulary {VOCAB_NAME} was not found; install a package that ships it: "
        "pip install mmsegmentation==1.2.2 (no torch needed) or open_clip_torch"
    )


def merge_pair(parts: Sequence[str], pair: tuple[str, str]) -> list[str]:
    """Join every occurrence of `pair` in `parts`, left to right (one BPE merge)."""
    merged: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


def byte_alphabet() -> dict[int, str]:
    """Map every byte to a printable character, as CLIP's byte-level BPE does.

    Printable Latin-1 bytes map to themselves; the rest (controls, space, ...) are moved to
    code points from 256 upwards, in byte order.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ClipTokenizer:
    """Byte-level BPE over the CLIP vocabulary; `tokenize` returns the BPE pieces."""

    def __init__(self, path: Path | None = None) -> None:
        import regex

        path = path or vocab_path()
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != VOCAB_SHA256:
            raise GazeError(f"{path}: not the CLIP vocabulary (sha256 differs from {VOCAB_SHA256[:12]}…)")
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _MERGES + 1]]
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.bytes_to_chars = byte_alphabet()
        self.chars_to_bytes = {c: b for b, c in self.bytes_to_chars.items()}
        # The id order: 256 byte symbols, the same with the end-of-word mark, merges, specials.
        symbols = list(self.bytes_to_chars.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + list(SPECIAL)
        self.ids = {piece: i for i, piece in enumerate(vocab)}
        self.pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self.split_special = regex.compile("(" + "|".join(regex.escape(s) for s in SPECIAL) + ")")
        self.spaces = regex.compile(r"\s+")
        self.cache: dict[str, list[str]] = {s: [s] for s in SPECIAL}

    def normalize(self, text: str) -> str:
        import ftfy

        return self.spaces.sub(" ", ftfy.fix_text(text)).strip().lower()

    def tokenize(self, text: str) -> list[str]:
        """The BPE pieces of `text`, without the start/end tokens."""
        pieces: list[str] = []
        for chunk in self.split_special.split(text):  # special tokens are matched before cleaning
            if chunk in SPECIAL:
                pieces.append(chunk)
                continue
            for word in self.pattern.findall(self.normalize(chunk)):
                pieces.extend(self._bpe("".join(self.bytes_to_chars[b] for b in word.encode("utf-8"))))
        return pieces

    def encode(self, text: str) -> list[int]:
        return [self.ids[p] for p in self.tokenize(text)]

    def count(self, text: str) -> int:
        return len(self.tokenize(text))

    def detokenize(self, pieces: Sequence[str]) -> str:
        """Readable text for BPE pieces (lower-cased, as the tokenizer saw it)."""
        data = bytearray()
        for piece in pieces:
            word_end = piece.endswith("</w>")
            data += bytes(self.chars_to_bytes[c] for c in piece.removesuffix("</w>"))
            if word_end:
                data += b" "
        return data.decode("utf-8", errors="replace").strip()

    def _bpe(self, word: str) -> list[str]:
        if word in self.cache:
            return self.cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            # Merge the pair with the lowest rank everywhere it occurs, left to right.
            pairs = set(zip(parts, parts[1:], strict=False))
            best = min(pairs, key=lambda p: self.ranks.get(p, len(self.ranks)))
            if best not in self.ranks:
                break
            parts = merge_pair(parts, best)
        self.cache[word] = parts
        return parts


@lru_cache(maxsize=1)
def tokenizer() -> ClipTokenizer:
    """The shared tokenizer (loading the vocabulary takes about a tenth of a second)."""
    return ClipTokenizer()


@dataclass(frozen=True)
class TokenCount:
    """How long a caption is in CLIP tokens and what each sd-scripts limit would cut."""

    tokens: int
    cut: dict[int, str]  # limit -> the text beyond it, only for limits the caption exceeds


def count_tokens(text: str) -> TokenCount:
    tok = tokenizer()
    pieces = tok.tokenize(text)
    cut = {limit: tok.detokenize(pieces[limit:]) for limit in LIMITS if len(pieces) > limit}
    return TokenCount(len(pieces), cut)


def required_max_token_length(tokens: int) -> int | None:
    """The smallest sd-scripts `max_token_length` that keeps `tokens` whole (225 at most)."""
    if tokens <= LIMITS[0]:
        return None
    return LIMITS[1] if tokens <= LIMITS[1] else LIMITS[2]
