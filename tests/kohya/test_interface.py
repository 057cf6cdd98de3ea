"""Checking configs against sd-scripts' argument and dataset-schema facts, and the cross-field rules."""

from __future__ import annotations

import pytest

from wrapper.kohya import interface, rules

TABLE = interface.committed_interface()
PARSER = TABLE["scripts"]["train_network.py"]
SDXL = TABLE["scripts"]["sdxl_train_network.py"]


def test_committed_table_is_the_pinned_tag():
    from wrapper.kohya.checkout import pinned

    assert TABLE["sd_scripts"] == {"tag": pinned()["tag"], "commit": pinned()["commit"]}
    assert PARSER["learning_rate"]["default"] == 2e-6 and PARSER["max_train_steps"]["default"] == 1600
    assert PARSER["caption_extension"]["default"] == ".caption"
    assert "cache_text_encoder_outputs" in SDXL and "cache_text_encoder_outputs" not in PARSER


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"netwrok_dim": 128}, "unknown argument 'netwrok_dim' (did you mean 'network_dim'?)"),
        ({"network_dim": "128"}, "network_dim = '128': expected an integer"),
        ({"network_dim": 12.5}, "expected an integer"),
        ({"learning_rate": "1e-4"}, "learning_rate = '1e-4': expected a number"),
        ({"gradient_checkpointing": 1}, "expected true or false"),
        ({"mixed_precision": "fp32"}, "from ['no', 'fp16', 'bf16']"),
        ({"sample_sampler": "dpm++2m"}, "sample_sampler = 'dpm++2m'"),
        ({"network_args": "conv_dim=4"}, "expected an array of strings"),
        ({"lr_warmup_steps": 1.5}, "fraction"),
        ({"config_file": "x.toml"}, "unknown argument 'config_file'"),
    ],
)
def test_argument_problems(args, message):
    problems = interface.argument_problems(args, PARSER, "config.toml")
    assert len(problems) == 1 and message in problems[0]


def test_good_arguments_pass():
    ok = {"network_dim": 4, "learning_rate": 1, "text_encoder_lr": 5e-5, "lr_warmup_steps": 0.1,
          "network_args": ["conv_dim=4"], "resolution": "512,512", "mixed_precision": "bf16"}
    assert interface.argument_problems(ok, PARSER, "c") == []
    assert interface.argument_problems({"text_encoder_lr": [1e-4, 2e-4]}, PARSER, "c") == []
    assert interface.argument_problems({"cache_text_encoder_outputs": True}, SDXL, "c") == []
    assert "unknown" in interface.argument_problems({"cache_text_encoder_outputs": True}, PARSER, "c")[0]


def test_flatten_matches_sd_scripts_rules():
    assert interface.flatten({"a": {"x": 1}, "b": {"x": 2, "y": 3}, "z": 4}) == {"x": 2, "y": 3, "z": 4}


def _dataset(**subset):
    return {"general": {}, "datasets": [{"resolution": [512, 512], "subsets": [{"image_dir": "/d", **subset}]}]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"general": {"shuffle_captions": True}},
         "general.shuffle_captions: key not allowed in a [general] table (did you mean"),
        ({"general": {"image_dir": "/d"}}, "allowed in subsets only"),
        ({"datasets": [{"resolution": 512.0, "subsets": [{"image_dir": "/d"}]}]}, "expected int|pair:int"),
        ({"datasets": [{"validation_split": 0, "subsets": [{"image_dir": "/d"}]}]}, "expected float"),
        ({"datasets": [{"subsets": [{"validation_split": 0.1, "image_dir": "/d"}]}]}, "subsets[0].validation_split"),
        ({"datasets": [{"subsets": [{}]}]}, "required key 'image_dir'"),
        (_dataset(face_crop_aug_range=[2, 4]), "pair:float"),
        ({"general": {"max_token_length": 225}}, "general.max_token_length: key not allowed"),
        ({"dataset": []}, "top-level key 'dataset'"),
    ],
)
def test_dataset_problems(config, message):
    problems = interface.dataset_problems(config, TABLE["dataset_schema"], "dataset.toml")
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    ("config", "masked_loss", "problem"),
    [
        ({"datasets": [{"subsets": [{"metadata_file": "/m.json", "image_dir": "/d"}]}]}, False, None),
        ({"datasets": [{"subsets": [{"metadata_file": "/m.json"}, {"image_dir": "/d"}]}]}, False, "cannot be mixed"),
        ({"datasets": [{"subsets": [{"metadata_file": "/m.json", "class_tokens": "x"}]}]}, False,
         "class_tokens: key not allowed in a fine-tuning subset"),
        ({"datasets": [{"subsets": [{"image_dir": "/d", "conditioning_data_dir": "/c"}]}]}, True, None),
        ({"datasets": [{"subsets": [{"image_dir": "/d", "conditioning_data_dir": "/c"}]}]}, False,
         "conditioning_data_dir: key not allowed in a DreamBooth subset"),
        ({"datasets": {"subsets": [{"image_dir": "/d"}]}}, False, "needs a [[datasets]] line before it"),
        ({"datasets": [{"subsets": {"image_dir": "/d"}}]}, False, "subsets must be an array of tables"),
        ({"datasets": ["x"]}, False, "datasets[0]: expected a table, found str"),
        ({"general": [1]}, False, "general: expected a table, found list"),
    ],
)
def test_dataset_kinds_follow_train_networks_sanitizer(config, masked_loss, problem):
    """Fine-tuning subsets, conditioning subsets with masked_loss, and malformed tables, as train_network.py
    (ConfigSanitizer(True, True, args.masked_loss, True)) takes them."""
    problems = interface.dataset_problems(config, TABLE["dataset_schema"], "d", masked_loss=masked_loss)
    assert (problems == []) if problem is None else any(problem in p for p in problems), problems


def test_good_dataset_passes():
    good = _dataset(caption_dropout_rate=0, face_crop_aug_range=[2.0, 4.0], flip_aug=True)
    good["datasets"][0] |= {"validation_split": 0.1, "validation_seed": 1, "enable_bucket": True}
    assert interface.dataset_problems(good, TABLE["dataset_schema"], "d") == []


@pytest.mark.parametrize(
    ("args", "subset", "dataset", "script", "message"),
    [
        ({"cache_latents": True}, {"random_crop": True}, {}, "train_network.py", "cached latents"),
        ({"lr_warmup_steps": 100, "lr_scheduler": "constant"}, {}, {}, "train_network.py", "constant_with_warmup"),
        ({"lr_scheduler": "cosine_restarts"}, {}, {}, "train_network.py", "did you mean 'cosine_with_restarts'"),
        ({"optimizer_type": "AdamW9bit"}, {}, {}, "train_network.py", "did you mean"),
        ({"max_token_length": 75}, {}, {}, "train_network.py", "150 or 225"),
        ({"v2": True}, {}, {}, "sdxl_train_network.py", "v2 is off"),
        ({"clip_skip": 2}, {}, {}, "sdxl_train_network.py", "ignores it"),
        ({"cache_text_encoder_outputs": True}, {}, {}, "sdxl_train_network.py", "network_train_unet_only"),
        ({"cache_text_encoder_outputs": True, "network_train_unet_only": True}, {"shuffle_caption": True}, {},
         "sdxl_train_network.py", "shuffle_caption"),
        ({"full_bf16": True, "mixed_precision": "fp16"}, {}, {}, "train_network.py", "mixed_precision = 'bf16'"),
        ({"persistent_data_loader_workers": True, "max_data_loader_n_workers": 0}, {}, {}, "train_network.py",
         "PyTorch refuses"),
        ({"sample_every_n_steps": 10}, {}, {}, "train_network.py", "without sample_prompts"),
        ({}, {}, {"enable_bucket": True, "resolution": [500, 512]}, "train_network.py", "not a multiple"),
        ({}, {}, {"enable_bucket": True, "bucket_reso_steps": 32}, "train_network.py", "divisible by 64"),
        ({}, {}, {"enable_bucket": True, "max_bucket_reso": 448}, "train_network.py", "max_bucket_reso = 448"),
        ({}, {}, {"validation_split": 0.1}, "train_network.py", "validation_seed"),
        ({}, {}, {"resolution": None}, "train_network.py", "resolution is required"),
    ],
)
def test_cross_field_rules(args, subset, dataset, script, message):
    config = _dataset(**subset)
    config["datasets"][0].update(dataset)
    if config["datasets"][0]["resolution"] is None:
        del config["datasets"][0]["resolution"]
    problems = rules.config_problems({"network_module": "networks.lora", **args}, config, script)
    assert any(message in p for p in problems), problems


def test_sdxl_allows_32_pixel_bucket_steps():
    config = _dataset()
    config["datasets"][0] |= {"enable_bucket": True, "bucket_reso_steps": 32, "resolution": [832, 1216],
                              "max_bucket_reso": 1216, "min_bucket_reso": 256}
    assert rules.config_problems({"network_module": "networks.lora"}, config, "sdxl_train_network.py") == []
