"""sd-scripts' prompt-line grammar: a prompt, then options, each after " --".

    a photo of a coat --n blurry, lowres --w 512 --h 768 --d 1 --l 7 --s 20 --ss euler_a

Two readers of such lines exist in sd-scripts v0.10.1, with their own options and quirks:

- the trainer (library/train_util.py load_prompts + line_to_prompt_dict) ends lines at "\\n" and
  "\\r" (readlines), strips them, splits them at " --" and matches *every* part against its option
  patterns, the prompt included: a prompt "s 20 steps" sets 20 sampling steps;
- gen_img.py (--from_file) ends lines wherever str.splitlines() does, cuts the first " --d SEEDS"
  out of the raw line, then splits the stripped line at " --" and matches the parts after the
  prompt; it expands "{a|b}" dynamic prompts anywhere in the line and splits the prompt into
  regions at " AND ".

Both skip blank lines and lines whose first character is "#", match option words case-insensitively
and drop a part that matches no option pattern without a word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

Reader = Literal["trainer", "gen_img"]
TRAINER: Reader = "trainer"
GEN_IMG: Reader = "gen_img"
SEPARATOR = " --"

# option word -> the pattern of its value, in the order sd-scripts tries them: re.match(f"{word} ({value})")
TRAINER_OPTIONS = {  # train_util.line_to_prompt_dict
    "w": r"\d+", "h": r"\d+", "d": r"\d+", "s": r"\d+", "l": r"[\d\.]+", "g": r"[\d\.]+", "n": r".+",
    "ss": r".+", "cn": r".+", "ctr": r".+", "rcfg": r".+", "fs": r".+",
}
GEN_IMG_OPTIONS = {  # gen_img.py main(), the per-line options
    "w": r"\d+", "h": r"\d+", "ow": r"\d+", "oh": r"\d+", "nw": r"\d+", "nh": r"\d+", "ct": r"\d+",
    "cl": r"\d+", "s": r"\d+", "l": r"[\d\.]+", "nl": r"[\d\.]+|none|None", "t": r"[\d\.]+", "n": r".+",
    "c": r".+", "am": r"[\d\.\-,]+", "dsd1": r"[\d\.]+", "dst1": r"[\d\.]+", "dsd2": r"[\d\.]+",
    "dst2": r"[\d\.]+", "dsr": r"[\d\.]+", "glt": r"[\d\.]+", "glr": r"[\d\.]+", "gle": r"[\d\.]+",
    "gls": r"[\d\.]+", "glsn": r"[\d\.]+", "glus": r"[\d\.\-,]+", "f": r".+",
}
GEN_IMG_SEED = re.compile(r" --d ([\d+,]+)", re.IGNORECASE)  # searched in the raw line before it is split
OPTION_WORDS = tuple(dict.fromkeys([*TRAINER_OPTIONS, *GEN_IMG_OPTIONS]))  # "d" of gen_img.py: GEN_IMG_SEED
# where each reader ends a line: readlines() in text mode; str.splitlines()
LINE_BREAKS = {TRAINER: "\n\r", GEN_IMG: "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}

_PATTERNS = {
    reader: [(word, re.compile(f"{word} ({value})", re.IGNORECASE)) for word, value in options.items()]
    for reader, options in ((TRAINER, TRAINER_OPTIONS), (GEN_IMG, GEN_IMG_OPTIONS))
}


def format_number(value: float) -> str:
    """Positional text for a number (7.0 -> '7', 0.6 -> '0.6'): the option patterns read no exponents."""
    return f"{value:.10f}".rstrip("0").rstrip(".")


def format_line(prompt: str, options: Mapping[str, str | int | float] | None = None) -> str:
    """One prompt line: the prompt, then ' --word value' per option, in the mapping's order.

    The texts must be free of `text_problems`; an option word sd-scripts does not know is a ValueError.
    """
    parts = [prompt]
    for word, value in (options or {}).items():
        if word not in OPTION_WORDS:
            raise ValueError(f"{word!r} is not a prompt-line option of sd-scripts")
        text = format_number(value) if isinstance(value, float) else str(value)
        parts.append(f"{word} {text}")
    return SEPARATOR.join(parts)


def read_option(part: str, reader: Reader = TRAINER) -> tuple[str, str] | None:
    """The (option word, value text) `reader` takes from one " --"-separated part, or None."""
    for word, pattern in _PATTERNS[reader]:
        match = pattern.match(part)
        if match:
            return word, match[1]
    return None


class PromptLine(NamedTuple):
    """A line as a reader takes it: the prompt, the options (a later part wins), the parts it drops."""

    prompt: str
    options: dict[str, str]
    ignored: tuple[str, ...] = ()


def split_line(line: str, reader: Reader = TRAINER) -> PromptLine:
    """Read one prompt line the way `reader` does (a trainer line is already stripped by `file_lines`)."""
    options: dict[str, str] = {}
    if reader == GEN_IMG:
        seed = GEN_IMG_SEED.search(line)
        if seed:
            options["d"] = seed[1]
            line = line[: seed.start()] + line[seed.end() :]
        line = line.strip()
    parts = line.split(SEPARATOR)
    ignored = []
    for i, part in enumerate(parts):
        if i == 0 and reader == GEN_IMG:
            continue
        found = read_option(part, reader)
        if found:
            options[found[0]] = found[1]
        elif i:
            ignored.append(part)
    return PromptLine(parts[0], options, tuple(ignored))


def file_lines(text: str, reader: Reader = TRAINER) -> list[tuple[int, str]]:
    """(line number, line) of each prompt line of a prompt file, as `reader` passes it to `split_line`."""
    if reader == GEN_IMG:
        return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip() and line[0] != "#"]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip() and line[0] != "#"]


Kind = Literal["line break", "option", "leading dashes", "space", "option start", "empty", "comment", "dynamic",
               "regions", "encoding"]


@dataclass(frozen=True)
class TextProblem:
    """Why a text cannot travel through a prompt line unchanged.

    `at` is the 0-based offset in the text where it shows; `message` follows the text's name
    ("... contains a line break").
    """

    at: int
    kind: Kind
    message: str


def text_problems(text: str, *, negative: bool = False, reader: Reader = TRAINER,
                  ends_line: bool = False) -> list[TextProblem]:
    """Everything that makes `reader` read `text` (a prompt, or with `negative` a ' --n' value) differently.

    Both readers strip only the ends of a line: white space at the start of a prompt is lost, white
    space at the end of a text only when nothing follows it in the line (`ends_line`). A prompt
    followed by options keeps a trailing space: 'ideals. ' + ' --n x' is read back as 'ideals. '.
    """
    problems = []
    breaks = [i for i, ch in enumerate(text) if ch in LINE_BREAKS[reader]]
    if breaks:
        problems.append(TextProblem(breaks[0], "line break", "contains a line break"))
    problems += _separator_problems(text, negative)
    if not negative and text[:1].isspace():
        problems.append(TextProblem(0, "space", "starts with white space, which sd-scripts strips from the line"))
    if ends_line and text[-1:].isspace():
        problems.append(TextProblem(len(text) - 1, "space", "ends with white space, which sd-scripts strips from "
                                    "the end of a line"))
    if not negative:
        problems += _prompt_start_problems(text, reader)
    if reader == GEN_IMG:
        for brace in (b for b in "{}" if b in text):
            message = f"contains {brace!r}, which gen_img.py reads as part of a dynamic prompt {{a|b}}; remove it"
            problems.append(TextProblem(text.index(brace), "dynamic", message))
        if not negative and " AND " in text:
            message = "contains ' AND ', which makes gen_img.py split the prompt into regions; write 'and'"
            problems.append(TextProblem(text.index(" AND ") + 1, "regions", message))
    surrogates = [i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff"]
    if surrogates:
        problems.append(TextProblem(surrogates[0], "encoding", "is not encodable as UTF-8"))
    return problems


def _separator_problems(text: str, negative: bool) -> list[TextProblem]:
    """Every ' --' in the text, counting the 'n ' a negative prompt follows in its line."""
    prefix = "n " if negative else ""
    probe, problems = prefix + text, []
    at = probe.find(SEPARATOR)
    while at >= 0:
        if at < len(prefix):
            message = "starts with '--', which makes the ' --n' before it empty"
            problems.append(TextProblem(0, "leading dashes", message))
        else:
            message = f"contains the option '{probe[at + 1 :].split(' ', 1)[0]}' (sd-scripts starts one at every ' --')"
            problems.append(TextProblem(at - len(prefix) + 1, "option", message))
        at = probe.find(SEPARATOR, at + 1)
    return problems


def _prompt_start_problems(prompt: str, reader: Reader) -> list[TextProblem]:
    """A prompt starts its line: not empty, not a comment, and for the trainer not an option either."""
    if not prompt.strip():
        return [TextProblem(0, "empty", "is empty")]
    if prompt.startswith("#"):
        return [TextProblem(0, "comment", "starts with '#', which makes sd-scripts skip the line")]
    found = read_option(prompt, reader) if reader == TRAINER else None
    if found:
        message = f"starts like a prompt option (--{found[0]} {found[1]}), which the trainer reads from the prompt too"
        return [TextProblem(0, "option start", message)]
    return []
