"""The research log is the specification: its prompts verbatim, its numbers, its glitch presets."""

from __future__ import annotations

import pytest

from recipes import builtin_registry
from recipes.glitches import SENTENCE_SEPARATOR
from recipes.standard import BASELINES, NEGATIVE, PROMPTS, SD15_STANDARD, SDXL_STANDARD
from wrapper.generation.grid import GLITCH_GRID, GLITCH_PROMPTS
from wrapper.generation.prompts import BUILTIN_PROMPTS, read_prompts

# A copy of the log's text, character for character: typographic apostrophes, the double space before
# "The straight hair" and the space at the end included.
LOG_P1 = (
    "A young, white woman with heavily teased platinum-blonde hair kneels on an office chair, her body angled "
    "provocatively towards the camera. She wears a beige t-shirt and extremely a short metallic bronze skirt, with "
    "thigh-high brown boots style sandals. The background is a dark, nondescript studio space, spotlighted from "
    "above, casting hard shadows. Her exaggerated hairstyle dominates the frame, styled in a way reminiscent of "
    "1980s glamour tropes. Her makeup is heavy, particularly around the eyes and mouth. The t-shirt\u2019s plainness "
    "contrasts with the shorts\u2019 high shine, making her body the focal point through both exposure and contrast. "
    "The lighting and styling play with high sexualisation, inviting visual consumption of the model\u2019s youthful "
    "body. The pose and styling hark back to earlier pin-up visual languages while repackaging them for fashion "
    "editorial. This image draws on retro-sexual archetypes, placing hyper-femininity in an ironic, object-centric "
    "frame.  The straight hair, youthful and toned skin, perfect lean body align with Eurocentric ideals. "
)
LOG_P2 = (
    "A tall, elegant fashion model stands confidently on a platform over a reflective lake, surrounded by striking "
    "beige rock formations under a clear blue sky. She wears a sculptural, strapless black mini dress with dramatic "
    "ruched fabric and a bold, plunging neckline that accentuates her silhouette. Her long legs are emphasized by "
    "sheer black tights and high heels. The lighting is sharp and natural, casting crisp shadows and reflecting the "
    "mountainous landscape in the still water. Her hair is slicked back and wet, enhancing the modern, sleek "
    "aesthetic. Editorial fashion photography, minimalist composition, natural textures, high contrast, confident "
    "and empowering mood. "
)
LOG_NEGATIVE = ("blurry, unnatural lighting, low resolution, extra limbs, distorted anatomy, unrealistic fabric, "
                "poor reflections, cartoonish textures, unflattering pose, bad proportions, washed out colors")


def test_the_copy_in_this_test_is_the_logs_text():
    assert LOG_P1.count("\u2019") == 3 and "frame.  The straight" in LOG_P1 and LOG_P1.endswith("ideals. ")
    assert LOG_P2.endswith("mood. ")


def test_generate_uses_the_logs_prompts_verbatim_first():
    prompts = read_prompts(BUILTIN_PROMPTS)
    assert [p.text for p in prompts[:2]] == [LOG_P1, LOG_P2]
    assert [p.negative for p in prompts[:2]] == [LOG_NEGATIVE, LOG_NEGATIVE]
    text = BUILTIN_PROMPTS.read_text(encoding="utf-8")
    own = text.index("# The project's own prompts")
    assert text.index(LOG_P1) < own and all(text.index(p.text) > own for p in prompts[2:])
    assert [prompts[n - 1].text for n in GLITCH_PROMPTS] == [LOG_P1, LOG_P2]


@pytest.mark.parametrize("recipe", BASELINES, ids=lambda r: r.name)
def test_the_baselines_sample_the_logs_prompts_with_and_without_its_negative(recipe):
    assert PROMPTS == (LOG_P1, LOG_P2) and NEGATIVE == LOG_NEGATIVE
    samples = [(p.prompt, p.negative) for p in recipe.sampling.prompts]
    assert samples == [(LOG_P1, LOG_NEGATIVE), (LOG_P1, ""), (LOG_P2, LOG_NEGATIVE), (LOG_P2, "")]


def test_both_baselines_have_the_logs_network_dim_and_say_what_is_chosen():
    assert SDXL_STANDARD.network.dim == SD15_STANDARD.network.dim == 128
    assert builtin_registry().resolve("sdxl-standard+dim").network.dim == 192  # the log's tweak
    for recipe in BASELINES[:2]:
        assert "From the log:" in recipe.description and "Chosen here:" in recipe.description


def test_part_dropout_drops_sentences():
    recipe = builtin_registry().resolve("sd15-standard+caption-dropout=part:0.3")
    assert (recipe.data.caption_tag_dropout_rate, recipe.data.caption_separator) == (0.3, SENTENCE_SEPARATOR)
    assert recipe.data.caption_dropout_rate == 0.0
    both = builtin_registry().resolve("sd15-standard+caption-dropout=whole:0.1,part:0.3").data
    assert (both.caption_dropout_rate, both.caption_tag_dropout_rate) == (0.1, 0.3)
    # what sd-scripts does with it (train_util.BaseDataset.process_caption): split, keep or drop each part
    parts = [t.strip() for t in LOG_P2.strip().split(SENTENCE_SEPARATOR)]
    assert len(parts) == 6 and parts[0].startswith("A tall") and parts[-1].endswith("mood.")


def test_the_generation_glitch_preset_is_the_logs_recipe():
    """No negative prompt against one, steps and CFG from very low to very high, DPM++ 2M and Euler."""
    assert GLITCH_GRID.negative == (False, True) and set(GLITCH_GRID.sampler) == {"dpm++2m", "euler"}
    assert min(GLITCH_GRID.steps) <= 5 and max(GLITCH_GRID.steps) >= 100 and 20 in GLITCH_GRID.steps
    assert min(GLITCH_GRID.cfg) <= 2 and max(GLITCH_GRID.cfg) >= 20 and 7.0 in GLITCH_GRID.cfg
