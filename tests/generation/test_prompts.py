"""Prompt files for generation grids: syntax, errors with line and column, what gen_img.py reads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wrapper.errors import ConfigError
from wrapper.generation.prompts import BUILTIN_PROMPTS, Prompt, parse_prompts, read_prompts
from wrapper.kohya.gen_img import prompt_line
from wrapper.kohya.prompt_lines import GEN_IMG, PromptLine, split_line, text_problems


def test_builtin_prompt_set_parses_with_a_negative_prompt():
    """The research log's two prompts first (tests/recipe/test_research_log.py has them verbatim), then the
    project's own; every prompt has a negative prompt."""
    prompts = read_prompts(BUILTIN_PROMPTS)
    assert len(prompts) >= 4 and all(p.negative for p in prompts)
    assert prompts[0].text.endswith("Eurocentric ideals. ") and prompts[1].text.endswith("empowering mood. ")


def test_a_space_at_the_end_of_a_prompt_is_kept_and_reaches_gen_img():
    """The log's first prompt ends with a space; gen_img.py strips only the line's ends, and options follow."""
    prompts = parse_prompts("negative: blurry \nideals. \nframe.  The straight hair  --n x\n")
    assert [(p.text, p.negative) for p in prompts] == [("ideals. ", "blurry"), ("frame.  The straight hair ", "x")]
    for p in prompts:
        line = prompt_line(p.text, p.negative, steps=20, cfg=7.0, seed=1, weight=1.0, filename="a.png")
        assert split_line(line, GEN_IMG).prompt == p.text
    assert [p.kind for p in text_problems("ideals. ", reader=GEN_IMG, ends_line=True)] == ["space"]
    assert text_problems("ideals. ", reader=GEN_IMG) == []


def test_negative_directive_applies_below_and_inline_negative_overrides():
    text = "# comment\nfirst prompt\nnegative: blurry, text\n\nsecond prompt\nthird prompt --n lowres\n"
    assert parse_prompts(text) == [
        Prompt("first prompt", "", 2, 1),
        Prompt("second prompt", "blurry, text", 5, 2),
        Prompt("third prompt", "lowres", 6, 3),
    ]


def test_empty_negative_directive_clears_it():
    prompts = parse_prompts("negative: blurry\na\nnegative:\nb\n")
    assert [p.negative for p in prompts] == ["blurry", ""]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("ok prompt\nwoman in coat --s 20\n", "p.txt:2:15", "option '--s'"),
        ("woman --n blurry --n text\n", "p.txt:1:18", "only one"),
        ("a {red|blue} coat\n", "p.txt:1:3", "dynamic prompt"),
        ("cat AND dog\n", "p.txt:1:5", "AND"),
        ("--n blurry\n", "p.txt:1:1", "must start with the prompt"),
        ("  negtive: blurry\nprompt\n", "p.txt:1:3", "did you mean 'negative:'"),
        ("prompt --n\n", "p.txt:1:8", "needs a negative prompt"),
        ("negative: a --l 7\nprompt\n", "p.txt:1:13", "option '--l'"),
        ("negative: --x\nprompt\n", "p.txt:1:11", "starts with '--'"),
        ("prompt --n  --x\n", "p.txt:1:13", "starts with '--'"),
        ("# only a comment\n", "p.txt: no prompts", "no prompts"),
    ],
)
def test_bad_syntax_names_line_and_column(text, where, words):
    with pytest.raises(ConfigError) as info:
        parse_prompts(text, "p.txt")
    assert where in str(info.value)
    assert words in str(info.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as info:
        parse_prompts("a --s 1\nb {x}\nc\n", "p.txt")
    assert "p.txt:1:" in str(info.value) and "p.txt:2:" in str(info.value)


def test_not_utf8_gives_line_and_column(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"good prompt\nbad \xff prompt\n")
    with pytest.raises(ConfigError, match=r"p\.txt:2:5: not UTF-8"):
        read_prompts(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_prompts(tmp_path / "nope.txt")


words = st.text(
    st.characters(codec="utf-8", exclude_characters="{}\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), min_size=1
)
clean = words.map(lambda s: " ".join(s.replace("--", "-").split())).filter(
    lambda s: s and not s.startswith(("#", "-")) and " AND " not in s and not s.lower().startswith("negative:")
)


@given(prompt=clean, negative=clean)
def test_round_trip_through_file_and_gen_img_line(prompt, negative):
    """Whatever the parser accepts reaches gen_img.py as exactly that prompt and negative prompt."""
    try:
        parsed = parse_prompts(f"{prompt} --n {negative}\n")
    except ConfigError:
        return  # e.g. a word that looks like a misspelt directive
    assert parsed == [Prompt(prompt.strip(), negative.strip(), 1, 1)]
    line = prompt_line(parsed[0].text, parsed[0].negative, steps=20, cfg=7.5, seed=3, weight=-0.6, filename="a/b.png")
    options = {"n": parsed[0].negative, "s": "20", "l": "7.5", "d": "3", "am": "-0.6", "f": "a/b.png"}
    assert split_line(line, GEN_IMG) == PromptLine(parsed[0].text, options)


def test_a_negative_starting_with_dashes_is_refused():
    """Regression: 'negative: --x' was accepted, and gen_img.py then read ' --n --x' as no negative prompt."""
    line = prompt_line("a coat", "--x", steps=20, cfg=7.0, seed=1, weight=1.0, filename="a.png")
    assert "n" not in split_line(line, GEN_IMG).options
    with pytest.raises(ConfigError, match="starts with '--'"):
        parse_prompts("negative: --x\na coat\n")


def test_prompts_may_start_like_an_option_word():
    """gen_img.py reads no options from the prompt part (unlike the trainer), so 'n ice coat' is a prompt."""
    assert parse_prompts("n ice coat --n blurry\n") == [Prompt("n ice coat", "blurry", 1, 1)]


@given(st.text(max_size=300))
def test_parser_raises_only_config_errors(text):
    try:
        prompts = parse_prompts(text)
    except ConfigError:
        return
    for p in prompts:
        assert " --" not in p.text and " --" not in p.negative and p.text
