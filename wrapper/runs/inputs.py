"""What a run trains on, checked before anything starts: the model's family, the prepared and audited
images, and the validation hold-out. Each step may adjust the recipe as it will run, and says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wrapper.errors import DatasetError, RunError, collect
from wrapper.kohya import models
from wrapper.recipe import Recipe, evolve
from wrapper.settings import PREPARED

Log = Callable[[str], None]


def prepare_images(recipe: Recipe, dataset: Path, model: Path, cache_dir: Path, log: Log) -> tuple[Recipe, Path]:
    """Check the model, prepare and audit the images: (the recipe as it will run, the prepared folder)."""
    from wrapper.dataset.prep import prepare_for_recipe

    recipe = check_model(recipe, model)
    log(f"preparing {dataset} ({recipe.prep.mode})")
    prepared = prepare_for_recipe(dataset, recipe.prep, cache_dir / PREPARED)
    log(f"  {prepared.images} images in {prepared.path}{' (reused)' if prepared.reused else ''}")
    return hold_out(audit(recipe, prepared.path, log), prepared.path, log), prepared.path.resolve()


def check_model(recipe: Recipe, model: Path) -> Recipe:
    """Refuse a checkpoint of the wrong family unless the recipe asks for a mismatch deliberately."""
    family = models.checkpoint_family(model)
    if family == recipe.family:
        return recipe
    names = models.CHECKPOINT_FAMILIES
    if recipe.base_model == "default":
        raise RunError(
            f"{model} is an {names[family]} checkpoint but recipe {recipe.name!r} trains {names[recipe.family]}; "
            "use a matching checkpoint, or add the mismatched-base modifier to do this on purpose"
        )
    if recipe.family == "sd15" and family == "sd2":
        return evolve(recipe, training={"v2": True})  # sd-scripts loads SD2.x into train_network with --v2
    raise RunError(
        f"{model} is an {names[family]} checkpoint: sd-scripts cannot load it for an {names[recipe.family]} "
        f"recipe even deliberately (its {names[recipe.family]} U-Net is fixed); mismatched-base works with "
        "another checkpoint of the same architecture, or SD2.x for an SD1.x recipe"
    )


def audit(recipe: Recipe, folder: Path, log: Log) -> Recipe:
    """Audit the prepared images; block on problems, raise max_token_length when captions need it."""
    from wrapper.dataset.audit import audit_dataset

    buckets = recipe.data.buckets if recipe.data.buckets.enabled else None
    report = audit_dataset(
        folder,
        caption_extension=recipe.data.caption_extension,
        resolution=recipe.data.resolution,
        buckets=buckets,
        family=recipe.family,
        allow_empty_captions=recipe.prep.allow_empty_captions,
    )
    collect(list(report.problems), DatasetError, f"the prepared dataset {folder} cannot be trained on")
    for warning in report.warnings:
        log(f"warning: {warning}")
    needed = report.required_max_token_length() or 75
    if needed > recipe.training.max_token_length:
        log(
            f"captions need up to {report.max_tokens} CLIP tokens: max_token_length raised "
            f"{recipe.training.max_token_length} -> {needed} for this run"
        )
        recipe = evolve(recipe, training={"max_token_length": needed})
    return recipe


def hold_out(recipe: Recipe, folder: Path, log: Log) -> Recipe:
    """With a validation split: one that holds out whole images in every subset, and what it costs."""
    from collections import Counter

    from wrapper.dataset.scan import scan
    from wrapper.kohya import validation

    wanted = recipe.data.validation_split
    if wanted <= 0:
        return recipe
    counts = Counter(str(Path(item.image).parent) for item in scan(folder, recipe.data.caption_extension).items)
    split = validation.clean_split(list(counts.values()), wanted)
    held = sum(validation.split_counts(n, split)[1] for n in counts.values())
    if split != wanted:
        log(f"validation split {wanted:g} -> {split:.4g} for this run: sd-scripts would otherwise also train on "
            "a held-out image")
        recipe = evolve(recipe, data={"validation_split": split})
    t = recipe.training
    every = validation.every_n_steps(t.validate_every_n_steps, t.max_train_steps)
    log(f"validation: {held} of {sum(counts.values())} images held out (not trained on), seed "
        f"{recipe.data.validation_seed}; every {every} steps and at each epoch end, "
        f"{held * validation.TIMESTEPS_PER_IMAGE} forward passes per evaluation")
    return recipe
