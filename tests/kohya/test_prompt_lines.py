"""sd-scripts' prompt-line grammar: what each reader takes from a line, and texts that travel exactly."""

from __future__ import annotations

import ast
import io
import os
import re
from functools import cache
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from wrapper.kohya.prompt_lines import (
    GEN_IMG,
    GEN_IMG_OPTIONS,
    GEN_IMG_SEED,
    LINE_BREAKS,
    OPTION_WORDS,
    TRAINER,
    TRAINER_OPTIONS,
    PromptLine,
    file_lines,
    format_line,
    format_number,
    split_line,
    text_problems,
)


class Errors(list):
    """A stand-in for sd-scripts' logger: the errors it would log."""

    def error(self, message: object) -> None:
        self.append(str(message))


def line_to_prompt_dict(line: str, logger: Errors) -> dict:
    """library/train_util.py v0.10.1 line_to_prompt_dict, copied (the logger is passed in)."""
    prompt_args = line.split(" --")
    prompt_dict = {}
    prompt_dict["prompt"] = prompt_args[0]
    for parg in prompt_args:
        try:
            m = re.match(r"w (\d+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["width"] = int(m.group(1))
                continue
            m = re.match(r"h (\d+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["height"] = int(m.group(1))
                continue
            m = re.match(r"d (\d+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["seed"] = int(m.group(1))
                continue
            m = re.match(r"s (\d+)", parg, re.IGNORECASE)
            if m:  # steps
                prompt_dict["sample_steps"] = max(1, min(1000, int(m.group(1))))
                continue
            m = re.match(r"l ([\d\.]+)", parg, re.IGNORECASE)
            if m:  # scale
                prompt_dict["scale"] = float(m.group(1))
                continue
            m = re.match(r"g ([\d\.]+)", parg, re.IGNORECASE)
            if m:  # guidance scale
                prompt_dict["guidance_scale"] = float(m.group(1))
                continue
            m = re.match(r"n (.+)", parg, re.IGNORECASE)
            if m:  # negative prompt
                prompt_dict["negative_prompt"] = m.group(1)
                continue
            m = re.match(r"ss (.+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["sample_sampler"] = m.group(1)
                continue
            m = re.match(r"cn (.+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["controlnet_image"] = m.group(1)
                continue
            m = re.match(r"ctr (.+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["cfg_trunc_ratio"] = float(m.group(1))
                continue
            m = re.match(r"rcfg (.+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["renorm_cfg"] = float(m.group(1))
                continue
            m = re.match(r"fs (.+)", parg, re.IGNORECASE)
            if m:
                prompt_dict["flow_shift"] = m.group(1)
                continue
        except ValueError as ex:
            logger.error(f"Exception in parsing / 解析エラー: {parg}")
            logger.error(ex)
    return prompt_dict


def steps(text: str) -> int:
    return max(1, min(1000, int(text)))


TRAINER_KEYS = {"w": ("width", int), "h": ("height", int), "d": ("seed", int), "s": ("sample_steps", steps),
                "l": ("scale", float), "g": ("guidance_scale", float), "n": ("negative_prompt", str),
                "ss": ("sample_sampler", str), "cn": ("controlnet_image", str), "ctr": ("cfg_trunc_ratio", float),
                "rcfg": ("renorm_cfg", float), "fs": ("flow_shift", str)}


def as_prompt_dict(read: PromptLine) -> dict:
    """split_line's reading in line_to_prompt_dict's terms (values converted as it converts them)."""
    out: dict = {"prompt": read.prompt}
    for word, value in read.options.items():
        key, convert = TRAINER_KEYS[word]
        out[key] = convert(value)
    return out


def gen_img_reads(raw_prompt: str) -> dict:
    """gen_img.py v0.10.1 main(): the seed search and the per-line option patterns, keeping the matched texts."""
    found: dict = {}
    m = re.search(r" --d ([\d+,]+)", raw_prompt, re.IGNORECASE)
    if m:
        found["d"] = m[1]
        raw_prompt = raw_prompt[: m.start()] + raw_prompt[m.end() :]
    prompt_args = raw_prompt.strip().split(" --")
    found["prompt"] = prompt_args[0]
    patterns = [("w", r"w (\d+)"), ("h", r"h (\d+)"), ("ow", r"ow (\d+)"), ("oh", r"oh (\d+)"), ("nw", r"nw (\d+)"),
                ("nh", r"nh (\d+)"), ("ct", r"ct (\d+)"), ("cl", r"cl (\d+)"), ("s", r"s (\d+)"),
                ("l", r"l ([\d\.]+)"), ("nl", r"nl ([\d\.]+|none|None)"), ("t", r"t ([\d\.]+)"), ("n", r"n (.+)"),
                ("c", r"c (.+)"), ("am", r"am ([\d\.\-,]+)"), ("dsd1", r"dsd1 ([\d\.]+)"),
                ("dst1", r"dst1 ([\d\.]+)"), ("dsd2", r"dsd2 ([\d\.]+)"), ("dst2", r"dst2 ([\d\.]+)"),
                ("dsr", r"dsr ([\d\.]+)"), ("glt", r"glt ([\d\.]+)"), ("glr", r"glr ([\d\.]+)"),
                ("gle", r"gle ([\d\.]+)"), ("gls", r"gls ([\d\.]+)"), ("glsn", r"glsn ([\d\.]+)"),
                ("glus", r"glus ([\d\.\-,]+)"), ("f", r"f (.+)")]
    for parg in prompt_args[1:]:
        for word, pattern in patterns:
            m = re.match(pattern, parg, re.IGNORECASE)
            if m:
                found[word] = m.group(1)
                break
    return found


# Lines with real options, near misses (W, Ss, ſ folds to s), unknown words and junk.
value = st.text(alphabet="0123456789.,-+ aZ", max_size=6)
word = st.sampled_from([*OPTION_WORDS, "x", "W", "Ss", "\u017f", "neg", "N", ""])
part = st.one_of(st.builds(lambda w, v: f"{w} {v}", word, value), st.text(max_size=8))
any_line = st.builds(lambda prompt, parts: " --".join([prompt, *parts]), st.one_of(part, st.text(max_size=12)),
                     st.lists(part, max_size=5))


def same_as_the_trainer(line: str, reader_function) -> None:
    errors = Errors()
    expected = reader_function(line, errors)
    assume(not errors)  # a value its pattern matched but int()/float() refused: sd-scripts logs it and moves on
    assert as_prompt_dict(split_line(line)) == expected


EVERY_TRAINER_OPTION = "a --W 5 --h 6 --D 7 --s 8 --l 7.5 --g 1.5 --N n --ss euler --cn x --ctr 0.5 --rcfg 2 --fs 3"


@settings(max_examples=400, deadline=None)
@given(any_line)
@example(EVERY_TRAINER_OPTION)
@example("s 20 photo --n blurry --S 30")  # the trainer reads options from the prompt part too
@example("\u017f 5 --l 7")  # re.IGNORECASE folds the long s to s
def test_split_line_reads_like_line_to_prompt_dict(line):
    same_as_the_trainer(line, line_to_prompt_dict)


@settings(max_examples=400, deadline=None)
@given(any_line)
@example("n ice coat --d 7 --s 20 --d 8")  # the first " --d" is cut out of the raw line, the second is dropped
@example("a --D 1,2 --am -0.5,1 --nl none --f x.png")
def test_split_line_reads_like_gen_img(line):
    read = split_line(line, GEN_IMG)
    assert {"prompt": read.prompt, **read.options} == gen_img_reads(line)


def test_unmatched_parts_are_reported_as_ignored():
    assert split_line("a --steps 20 --w wide --W 512") == PromptLine("a", {"w": "512"}, ("steps 20", "w wide"))


def test_option_words_cover_both_readers():
    assert set(OPTION_WORDS) == set(TRAINER_OPTIONS) | set(GEN_IMG_OPTIONS)
    assert {"ss", "g", "cn", "fs"} <= set(OPTION_WORDS) and {"am", "f", "nl", "glus"} <= set(OPTION_WORDS)
    with pytest.raises(ValueError, match="'steps' is not a prompt-line option"):
        format_line("a", {"steps": 20})


@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False).map(lambda v: round(v, 4)))
def test_numbers_are_written_without_exponents(value):
    text = format_number(value)
    assert "e" not in text and float(text) == pytest.approx(value, abs=1e-9)


# ---- line ends: readlines() for the trainer, str.splitlines() for gen_img.py ---------------------------------------


def test_gen_img_line_breaks_are_exactly_those_of_splitlines():
    breaks = {chr(c) for c in range(0x110000) if len(f"a{chr(c)}b".splitlines()) > 1}
    assert breaks == set(LINE_BREAKS[GEN_IMG])


def test_trainer_line_breaks_are_those_of_readlines():
    for ch in LINE_BREAKS[GEN_IMG]:
        lines = io.TextIOWrapper(io.BytesIO(f"a{ch}b".encode()), encoding="utf-8").readlines()
        assert (len(lines) > 1) == (ch in LINE_BREAKS[TRAINER]), repr(ch)


file_text = st.lists(st.sampled_from(["a", "#", " ", "--n", "\n", "\r", "\r\n", "\x0c", "\u2028", "\x85", "é"]),
                     max_size=30).map("".join)


@given(file_text)
def test_file_lines_are_the_lines_each_reader_keeps(text):
    raw = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8").readlines()  # load_prompts
    assert [line for _, line in file_lines(text)] == [ln.strip() for ln in raw if ln.strip() and ln[0] != "#"]
    raw = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8").read().splitlines()  # gen_img.py
    assert [line for _, line in file_lines(text, GEN_IMG)] == [ln for ln in raw if ln.strip() and ln[0] != "#"]


def test_a_form_feed_inside_a_prompt_ends_the_line_only_for_gen_img():
    """Regression: samples.py used str.splitlines() on the trainer's file, so a form feed or U+2028
    inside a prompt made two prompts and shifted the index of every later prompt."""
    text = "first\u2028half --n x\nsecond\x0cpage\nthird\n"
    assert file_lines(text) == [(1, "first\u2028half --n x"), (2, "second\x0cpage"), (3, "third")]
    assert [line for _, line in file_lines(text, GEN_IMG)] == ["first", "half --n x", "second", "page", "third"]
    assert text_problems("a\x0cb") == []
    assert [p.kind for p in text_problems("a\x0cb", reader=GEN_IMG)] == ["line break"]


# ---- texts that travel exactly ---------------------------------------------------------------------------------


def expected_options(options: dict) -> dict:
    return {k: format_number(v) if isinstance(v, float) else str(v) for k, v in options.items()}


texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
mostly_words = st.lists(st.sampled_from(["a", "n", "s", "W", " ", "-", "#", "{", "AND", "5", ".", "\u017f"]),
                        min_size=1, max_size=12).map("".join)


@settings(max_examples=500, deadline=None)
@given(
    prompt=st.one_of(texts, mostly_words),
    negative=st.one_of(st.just(""), texts, mostly_words),
    cfg=st.floats(0.5, 30).map(lambda x: round(x, 3)),
    seed=st.integers(0, 2**32 - 1),
    reader=st.sampled_from([TRAINER, GEN_IMG]),
)
@example(prompt="0", negative="--", cfg=7.0, seed=1, reader=TRAINER)  # "n " + "--" is " --"
@example(prompt="a -", negative="b -", cfg=7.0, seed=1, reader=GEN_IMG)
def test_texts_without_problems_read_back_exactly(prompt, negative, cfg, seed, reader):
    """format_line -> a prompt file -> file_lines -> split_line gives back every text and value."""
    problems = text_problems(prompt, reader=reader)
    problems += text_problems(negative, negative=True, reader=reader) if negative else []
    if problems:
        return
    options: dict = {"n": negative} if negative else {}
    options |= {"s": 20, "l": cfg, "d": seed}
    options |= {"am": -0.6, "f": "images/p01.png"} if reader == GEN_IMG else {"w": 512, "h": 768, "ss": "euler_a"}
    [(_, line)] = file_lines("# a comment\n" + format_line(prompt, options) + "\n", reader)
    assert split_line(line, reader) == PromptLine(prompt, expected_options(options))


# ---- where the old copies disagreed ------------------------------------------------------------------------------


def test_a_negative_may_start_like_an_option():
    """Regression: render.py refused negatives such as 's 20 blurry'; the trainer's `n (.+)` takes the rest."""
    assert text_problems("s 20 blurry", negative=True) == []
    line = format_line("a coat", {"n": "s 20 blurry", "s": 30})
    assert split_line(line) == PromptLine("a coat", {"n": "s 20 blurry", "s": "30"})


def test_a_prompt_is_refused_only_when_the_trainer_takes_an_option_from_it():
    """Regression: render.py and configs.py refused any prompt starting with an option word and a space."""
    assert text_problems("s curve road") == [] and text_problems("w ide angle shot") == []
    assert split_line("s curve road --s 20") == PromptLine("s curve road", {"s": "20"})
    [problem] = text_problems("S 30 steps of a staircase")
    assert problem.kind == "option start" and "--s 30" in problem.message
    assert split_line("S 30 steps of a staircase --w 512").options == {"s": "30", "w": "512"}


def test_gen_img_reads_no_options_from_the_prompt():
    assert text_problems("n ice coat", reader=GEN_IMG) == []
    assert [p.kind for p in text_problems("n ice coat")] == ["option start"]
    assert split_line("n ice coat --s 20", GEN_IMG) == PromptLine("n ice coat", {"s": "20"})
    assert split_line("n ice coat --s 20").options == {"n": "ice coat", "s": "20"}


def test_a_negative_starting_with_dashes_is_refused():
    """Regression: generation/prompts.py accepted 'negative: --x'; the line then carries an empty --n."""
    line = format_line("a coat", {"n": "--x", "s": 20})
    assert split_line(line, GEN_IMG) == PromptLine("a coat", {"s": "20"}, ("n", "x"))
    assert [p.kind for p in text_problems("--x", negative=True, reader=GEN_IMG)] == ["leading dashes"]
    assert text_problems("--x") == []  # at the start of a line "--" is just text


@pytest.mark.parametrize("reader", [TRAINER, GEN_IMG])
def test_white_space_at_the_end_survives_when_options_follow(reader):
    """Both readers strip only the ends of the line: 'ideals. ' + ' --n x' keeps its space (the research log's
    first prompt ends with one), a last text loses it, and a text's start is the line's start."""
    prompt = "frame.  The straight hair, ideals. "
    assert text_problems(prompt, reader=reader) == []
    [(_, line)] = file_lines(format_line(prompt, {"n": "blurry ", "s": 20}) + "\n", reader)
    assert split_line(line, reader) == PromptLine(prompt, {"n": "blurry ", "s": "20"})
    [problem] = text_problems(prompt, reader=reader, ends_line=True)
    assert problem.kind == "space" and problem.at == len(prompt) - 1
    assert [p.kind for p in text_problems(" " + prompt, reader=reader)] == ["space"]


@pytest.mark.parametrize(
    ("text", "negative", "reader", "kinds"),
    [
        ("a --s 20", False, TRAINER, ["option"]),
        ("a\nb", True, TRAINER, ["line break"]),
        (" a", False, TRAINER, ["space"]),
        ("", False, GEN_IMG, ["empty"]),
        ("#1 coat", False, GEN_IMG, ["comment"]),
        ("#1 coat", True, GEN_IMG, []),
        ("a {b|c}", True, GEN_IMG, ["dynamic", "dynamic"]),
        ("a {b|c}", False, TRAINER, []),
        ("cat AND dog", False, GEN_IMG, ["regions"]),
        ("cat AND dog", True, GEN_IMG, []),
        ("a\ud800", False, TRAINER, ["encoding"]),
    ],
)
def test_problem_kinds(text, negative, reader, kinds):
    assert [p.kind for p in text_problems(text, negative=negative, reader=reader)] == kinds


def test_problems_point_at_their_column():
    [option] = text_problems("woman in coat --s 20")
    assert option.at == 14 and "'--s'" in option.message
    [brace] = text_problems("a {red|blue", reader=GEN_IMG)
    assert brace.at == 2


# ---- against the checkout (SD_SCRIPTS_DIR) ---------------------------------------------------------------------


@cache
def checkout_line_to_prompt_dict():
    """The checkout's own line_to_prompt_dict, lifted out of train_util.py (which needs torch to import)."""
    source = (Path(os.environ["SD_SCRIPTS_DIR"]) / "library" / "train_util.py").read_text(encoding="utf-8")
    node = next(n for n in ast.parse(source).body if getattr(n, "name", "") == "line_to_prompt_dict")
    code = compile(ast.Module([node], type_ignores=[]), "train_util.py", "exec")

    def read(line: str, errors: Errors) -> dict:
        namespace = {"re": re, "logger": errors}
        exec(code, namespace)
        return namespace["line_to_prompt_dict"](line)

    return read


@pytest.mark.sd_scripts
@settings(max_examples=300, deadline=None)
@given(any_line)
@example(EVERY_TRAINER_OPTION)
@example("s 20 photo --n blurry --S 30")
def test_split_line_reads_like_the_checkouts_trainer(line):
    same_as_the_trainer(line, checkout_line_to_prompt_dict())


@pytest.mark.sd_scripts
def test_gen_img_options_are_the_checkouts(sd_scripts_dir):
    source = (sd_scripts_dir / "gen_img.py").read_text(encoding="utf-8")
    loop = source.split("for parg in prompt_args[1:]:", 1)[1].split("except ValueError", 1)[0]
    found = re.findall(r'^\s*m = re\.match\(r"(\w+) \((.+)\)", parg, re\.IGNORECASE\)', loop, re.MULTILINE)
    assert found == list(GEN_IMG_OPTIONS.items())
    assert f're.search(r"{GEN_IMG_SEED.pattern}", raw_prompt, re.IGNORECASE)' in source
    assert "prompt_list = f.read().splitlines()" in source
