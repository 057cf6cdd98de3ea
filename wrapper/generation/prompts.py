"""Prompt files for generation grids: one prompt per line, negative prompts, strict syntax.

    # a comment
    negative: lowres, bad anatomy, blurry        <- negative prompt for the prompts below it
    fashion photo of a woman in a red coat        <- a prompt
    studio portrait, white background --n text    <- a prompt with its own negative prompt

A prompt is taken exactly as written after its indentation, white space at its end included (the
research log's first prompt ends with a space): gen_img.py strips only the ends of a line, and the
prompt is always followed by options there. Negative prompts are stripped.

Steps, CFG, seed and sampler come from the grid, never from the file. Text that sd-scripts'
gen_img.py would read as something else (wrapper.kohya.prompt_lines.text_problems: " --" other
than one " --n", "{" or "}" of dynamic prompts, " AND " of regional prompts) is an error with its
line and column.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from wrapper.errors import ConfigError, collect
from wrapper.kohya.prompt_lines import GEN_IMG, SEPARATOR, text_problems

BUILTIN_PROMPTS = Path(__file__).resolve().parents[2] / "recipes" / "prompts.txt"
DIRECTIVE = "negative:"
NEGATIVE_OPTION = SEPARATOR + "n "
OPTION_HINT = "only one ' --n NEGATIVE' may follow the prompt; steps, CFG, seed and sampler come from the grid"


@dataclass(frozen=True)
class Prompt:
    """One prompt and the negative prompt that goes with it ("" when there is none)."""

    text: str
    negative: str
    line: int
    number: int  # 1-based position among the file's prompts; prompt ids (p01, ...) follow it


def read_prompts(path: Path) -> list[Prompt]:
    """Parse a prompt file; every syntax problem is reported with its line and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"option --prompts: {path} does not exist; expected a prompt file (see {BUILTIN_PROMPTS})")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}:{line}:{column}: not UTF-8 text (byte {data[exc.start]:#04x})") from None
    return parse_prompts(text, str(path))


def parse_prompts(text: str, source: str = "<prompts>") -> list[Prompt]:
    """Parse prompt-file text; raise one ConfigError listing every problem as source:line:column."""
    prompts: list[Prompt] = []
    problems: list[str] = []
    negative = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped.strip() or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        where = f"{source}:{number}"
        if stripped[: len(DIRECTIVE)].lower() == DIRECTIVE:
            body = stripped[len(DIRECTIVE) :]
            problems += _check_text(body, where, indent + len(DIRECTIVE), "negative prompt")
            negative = body.strip()
            continue
        problems += _check_directive_typo(stripped, where, indent)
        prompt, own_negative, found = _split_line(stripped, where, indent)
        problems += found
        own = negative if own_negative is None else own_negative
        prompts.append(Prompt(prompt, own, number, len(prompts) + 1))
    if not prompts and not problems:
        problems.append(f"{source}: no prompts found (every line is blank, a comment or a 'negative:' line)")
    collect(problems, ConfigError, f"{source}: bad prompt file")
    return prompts


def _split_line(line: str, where: str, indent: int) -> tuple[str, str | None, list[str]]:
    """Split 'prompt --n negative' and check both parts; columns are 1-based. The prompt keeps white space
    at its end, the negative prompt is stripped."""
    problems: list[str] = []
    if line.startswith("--"):
        return "", None, [f"{where}:{indent + 1}: a line must start with the prompt, not with an option"]
    cut = line.find(NEGATIVE_OPTION)
    if cut < 0 and line.rstrip().endswith(NEGATIVE_OPTION.rstrip()):
        cut = len(line.rstrip()) - len(NEGATIVE_OPTION.rstrip())
    prompt = line if cut < 0 else line[:cut]
    problems += _check_text(prompt, where, indent, "prompt")
    if cut < 0:
        return prompt, None, problems
    start = cut + len(NEGATIVE_OPTION)
    negative = line[start:]
    problems += _check_text(negative, where, indent + start, "negative prompt")
    if not negative.strip():
        problems.append(f"{where}:{indent + cut + 2}: '--n' needs a negative prompt after it")
    return prompt, negative.strip(), problems


def _check_text(text: str, where: str, offset: int, what: str) -> list[str]:
    """Problems of a text that gen_img.py would read differently; `offset`: its 0-based column. A prompt
    keeps the white space at its end (options follow it in every gen_img.py line), a negative is stripped."""
    lead = len(text) - len(text.lstrip())
    problems = []
    body = text.lstrip() if what == "prompt" else text.strip()
    for p in text_problems(body, negative=what != "prompt", reader=GEN_IMG):
        hint = f"; {OPTION_HINT}" if p.kind == "option" else ""
        problems.append(f"{where}:{offset + lead + p.at + 1}: the {what} {p.message}{hint}")
    return problems


def _check_directive_typo(line: str, where: str, indent: int) -> list[str]:
    """A first word like 'negtive:' is almost surely a misspelt directive, not a prompt."""
    word, colon, _ = line.partition(":")
    if not colon or " " in word or not word:
        return []
    if difflib.SequenceMatcher(None, word.lower(), DIRECTIVE[:-1]).ratio() >= 0.75:
        return [f"{where}:{indent + 1}: unknown directive {word + ':'!r} (did you mean 'negative:'?)"]
    return []


def prompt_id(prompt: Prompt) -> str:
    """Stable id of a prompt in file names and the index: p01 for the file's first prompt, ..."""
    return f"p{prompt.number:02d}"
