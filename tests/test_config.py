"""The workflow config (layersim.config): one shape for the paper experiments, defaults from the
schema, one validation step with one short paragraph per error, hostile YAML refused, and the
checks that need no training made at the dry run."""

import copy
import importlib
import time

import pytest
import yaml
from workflow_runner import REPO, run_snakemake

from layersim.config import ConfigError, TrainConfigError, dataset_problem, read_config_file, train_config, train_defaults, validate_config

CONFIGS = [REPO / "config" / "config.yaml", *sorted((REPO / "config" / "experiments").glob("*.yaml"))]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

TINY = {
    "experiment": "tiny",
    "dataset": {"name": "digits", "eval_fraction": 0.1, "image_size": 8},
    "train": {"epochs": 1},
    "models": {"m8x1": {"depth": 8, "width": 1}, "m8x2": {"depth": 8, "width": 2}},
    "seeds": [0, 1],
    "similarity": {"compare": {"pairs": [["m8x1", "m8x2"]]}},
}


def tiny(**edits) -> dict:
    config = copy.deepcopy(TINY)
    config.update(edits)
    return config


def error_of(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    return str(err.value)


def assert_short(message: str, max_lines: int = 4) -> None:
    """One short paragraph per error: never the schema or the document."""
    assert len(message.splitlines()) <= max_lines and len(message) < 1200, message
    for schema_word in ("$schema", "additionalProperties", "description", "'properties'"):
        assert schema_word not in message, message


# --- 1. one shape for the paper experiments ---------------------------------------------------


def test_every_paper_experiment_is_one_section_under_papers_with_its_rule_file_and_jobs():
    schema = yaml.safe_load(SCHEMA.read_text())
    top = set(schema["properties"])
    assert not top & {"pca", "block_structure", "identification", "functional_papers"}
    papers = schema["properties"]["papers"]["properties"]
    assert set(papers) == {"nguyen", "kornblith", "johnson", "existence", "checkpoints", "ding", "architectures", "representation_sets", "minigrid"}
    for name in papers:
        assert (REPO / "workflow" / "rules" / f"{name}.smk").is_file(), name
        importlib.import_module(f"layersim.jobs.{name}")
        assert (REPO / "workflow" / "rules" / "helpers" / f"{name}.smk").is_file(), name  # its target helpers
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    for helper in ("def series_names", "def identification_instances", "def ckpt_models", "def arch_models", "def rs_stores", "def functional_paper_targets"):
        assert helper not in common


def test_shipped_configs_use_only_papers_keys():
    for path in CONFIGS:
        config = yaml.safe_load(path.read_text())
        assert not set(config) & {"pca", "block_structure", "identification", "functional_papers"}, path.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_defaults_are_filled_as_snakemake_validate_fills_them(path, monkeypatch):
    """The one validation step fills exactly the defaults Snakemake's validate(set_default=True) does."""
    from snakemake.utils import validate

    monkeypatch.setattr("layersim.config.dataset_problem", lambda *a: None)  # no CIFAR data here
    ours = validate_config(read_config_file(path))
    theirs = yaml.safe_load(path.read_text())
    validate(theirs, str(SCHEMA), set_default=True)
    assert ours == theirs


# --- 2. one validation step, short errors -----------------------------------------------------


def test_typo_of_seeds_names_the_nearest_key_in_one_short_paragraph():
    config = tiny()
    config["seed"] = config.pop("seeds")
    message = error_of(config)
    assert "unknown key 'seed'" in message and "Did you mean 'seeds'?" in message
    assert_short(message)


def test_nested_typo_names_its_path_and_nearest_key():
    message = error_of(tiny(similarity={"passess": 3}))
    assert "similarity.passess" in message and "Did you mean 'passes'?" in message
    assert_short(message)


def test_unknown_gram_kernel_names_the_nearest_and_the_known_ones():
    message = error_of(tiny(similarity={"gram_kernel": "blocked3"}))
    assert "similarity.gram_kernel: unknown Gram kernel 'blocked3'" in message and "Known: auto, syrk, gemm, blocked2, blocked4" in message
    assert "Did you mean" in message
    assert_short(message)
    for kernel in ("auto", "blocked4"):
        validate_config(tiny(similarity={"gram_kernel": kernel}))


def test_unknown_store_dtype_is_refused_with_the_allowed_ones():
    assert validate_config(tiny())["extract"]["dtype"] == "float32"
    message = error_of(tiny(extract={"dtype": "bfloat16"}))
    assert "extract.dtype: 'bfloat16' is not allowed" in message and "Allowed: float32, float16" in message
    assert_short(message)


def test_partial_config_says_configs_replace_the_default():
    message = error_of({"train": {"epochs": 2}})
    assert "no models: section" in message and "replaces config/config.yaml" in message and "copy config/config.yaml" in message
    assert_short(message)


@pytest.mark.parametrize(
    "model,image_size,expected",
    [
        ({"depth": 30}, 8, "6n+2"),
        ({"framework": "keras", "depth": 30}, 8, "6n+2"),
        ({"family": "vgg", "depth": 12}, 32, "11, 13 or 16"),
        ({"family": "vgg", "depth": 11}, 8, "side"),
        ({"family": "tiny10", "depth": 10}, 8, "side"),
        ({"family": "vgg", "depth": 11, "width": 4}, 16, "side"),  # wide: the side check runs at width 1
        ({"family": "mobilenet", "depth": 28, "width": 0.5}, 8, "side"),  # narrow: at its own width
        ({"depth": 8, "width": 2.5}, 8, "positive integer"),  # the builder's own width check
        ({"framework": "keras", "family": "seed_resnet", "depth": 51}, 32, "50, 101, 152"),
    ],
)
def test_architecture_that_cannot_be_built_is_a_config_error(model, image_size, expected):
    config = tiny(models={"bad": model}, similarity={}, dataset={"name": "digits", "image_size": image_size})
    message = error_of(config)
    assert "models.bad" in message and expected in message
    assert_short(message)


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda c: c["similarity"]["compare"].update(pairs=[["m8x1", "m8x3"]]), "'m8x3' is not a model under models:. Did you mean 'm8x2'? Known models: m8x1, m8x2"),
        (lambda c: c.update(metrics={"names": ["linear_ckaa"]}), "unknown metric 'linear_ckaa'. Did you mean 'linear_cka'?"),
        (lambda c: c.update(papers={"kornblith": {"enabled": True, "model": "m8x1"}}, seeds=[0]), "seeds: needs at least 2"),
        (lambda c: c.update(papers={"kornblith": {"enabled": True, "model": "m8x1", "metrics": ["cka"]}}), "IDENTIFICATION_METRICS"),
        (lambda c: c.update(papers={"ding": {"enabled": True, "model": "nope"}}), "papers.ding.model"),
        (lambda c: c.update(papers={"nguyen": {"block_structure": {"enabled": True, "width_series_depths": [14]}}}), "no resnet model has it"),
        (lambda c: c.update(papers={"checkpoints": {"enabled": True, "models": ["m8x1", "m8x2"]}}) or c["models"]["m8x2"].update(train={"epochs": 2}), "same number of epochs"),
        (lambda c: c.update(papers={"architectures": {"enabled": True, "metrics": ["procrustes", "svcc"]}}), "unknown metric 'svcc'"),
        (lambda c: c.update(papers={"representation_sets": {"enabled": True, "model": "m8x1", "train_on": ["a"], "test_on": ["a"]}}), "'a' is not under its datasets"),
        (lambda c: c["train"].update(xla=True), "keras models only"),
    ],
)
def test_cross_field_checks_run_in_the_validation_step(edit, expected):
    config = tiny()
    edit(config)
    message = error_of(config)
    assert expected in message
    assert_short(message)


def test_metric_names_come_from_the_registry_not_the_schema():
    from layersim.metrics import METRICS

    assert "enum: [linear_cka" not in SCHEMA.read_text()
    validate_config(tiny(metrics={"names": sorted(METRICS)}))


# --- 3. hostile configs -----------------------------------------------------------------------


def alias_bomb(levels: int = 7, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast_with_one_short_message(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert time.perf_counter() - start < 5
    assert "aliases" in str(err.value) and "line 2" in str(err.value)
    assert_short(str(err.value), max_lines=1)


def test_any_alias_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: &t {epochs: 1}\nmodels: {m: {depth: 8, train: *t}}\n")
    with pytest.raises(ConfigError, match=r"aliases \(\*t\)"):
        read_config_file(path)


def test_duplicate_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seeds: [0, 1]\nmodels: {m: {depth: 8}}\nseeds: [2]\n")
    with pytest.raises(ConfigError, match=r"line 3: key 'seeds' appears twice .*first on line 1"):
        read_config_file(path)


@pytest.mark.parametrize("where", ["experiment", "model"])
def test_name_with_a_trailing_newline_is_refused(where):
    config = tiny()
    if where == "experiment":
        config["experiment"] = "tiny\n"
    else:
        config["models"]["m8x3\n"] = {"depth": 8}
    assert "line break" in error_of(config)


def test_130_character_model_name_fails_at_validation():
    name = "m" * 130
    message = error_of(tiny(models={name: {"depth": 8}}, similarity={}))
    assert "130 characters" in message and "at most 64" in message
    assert_short(message)


@pytest.mark.parametrize("text,path", [("lr: .nan", "train.lr"), ("lr: .inf", "train.lr"), ("momentum: -.inf", "train.momentum")])
def test_non_finite_numbers_are_refused(tmp_path, text, path):
    file = tmp_path / "c.yaml"
    file.write_text(f"models: {{m: {{depth: 8}}}}\ntrain: {{{text}}}\n")
    message = error_of(read_config_file(file))
    assert f"{path}:" in message and "not a finite number" in message


# --- 4. errors at the dry run -----------------------------------------------------------------


def test_missing_cifar_archive_names_the_file_and_where_to_get_it(tmp_path):
    message = dataset_problem({"name": "cifar10", "path": str(tmp_path), "fmt": None}, "dataset")
    assert "cifar-10-python.tar.gz" in message and "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    message = dataset_problem({"name": "cifar100", "path": str(tmp_path), "fmt": "binary"}, "dataset")
    assert "cifar-100-binary.tar.gz" in message and "does not exist" in message
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert dataset_problem({"name": "cifar10", "path": str(tmp_path), "fmt": None}, "dataset") is None


# --- 5. one train: section for both frameworks ------------------------------------------------


def test_training_defaults_come_from_the_schema_only():
    import layersim.train.keras as train_keras_module
    import layersim.train.torch as train_torch_module

    schema = yaml.safe_load(SCHEMA.read_text())
    assert train_defaults() == {k: v["default"] for k, v in schema["$defs"]["train"]["properties"].items()}
    assert train_config({"epochs": 2}) == {**train_defaults(), "epochs": 2}
    for module in (train_torch_module, train_keras_module):
        assert not hasattr(module, "DEFAULT_TRAIN")
        assert module.TrainConfigError is TrainConfigError
    with pytest.raises(TrainConfigError, match="optimizer"):
        train_config({"optimizer": "rmsprop"})


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_library_training_checks_its_settings_against_the_schema(framework, tmp_path):
    """train_torch and train_keras called without the workflow refuse what the schema refuses,
    naming every bad setting, before any training starts."""
    from layersim.data import load_dataset

    arch, bad, data = {"family": "resnet", "depth": 8, "width": 1}, {"epochs": -1, "batch_size": 0, "lr": "0.1", "bogus": 1}, load_dataset({"name": "digits"})
    with pytest.raises(TrainConfigError) as err:
        if framework == "torch":
            from layersim.train.torch import train_torch

            train_torch(arch, bad, data, seed=0, checkpoint=tmp_path / "m.pt", history=tmp_path / "h.json")
        else:
            from layersim.train.keras import train_keras

            train_keras(arch, bad, data, tmp_path / "m.keras", tmp_path / "h.json", seed=0)
    message = str(err.value)
    assert "train.epochs: -1 is out of range; it must be ≥ 0." in message
    assert "train.batch_size: 0 is out of range; it must be ≥ 1." in message
    assert "train.lr: '0.1' is a str; expected number." in message
    assert "train.bogus: unknown key 'bogus' in train." in message
    assert not list(tmp_path.iterdir())


def test_torch_adam_is_constant_lr_adam_and_sgd_decays():
    import torch

    from layersim.train.torch import _optimizer

    model = torch.nn.Linear(2, 2)
    opt, sched = _optimizer(model, train_config({"optimizer": "adam", "lr": 0.01}))
    assert isinstance(opt, torch.optim.Adam) and sched is None and opt.param_groups[0]["lr"] == 0.01
    opt, sched = _optimizer(model, train_config({"optimizer": "sgd", "lr": 0.1, "epochs": 2}))
    assert isinstance(opt, torch.optim.SGD) and isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)


def test_adam_for_a_torch_model_is_a_valid_config_and_trains(tmp_path):
    validate_config(tiny(train={"epochs": 1, "optimizer": "adam", "lr": 0.001}))
    from layersim.data import load_dataset
    from layersim.train.torch import train_torch

    dataset = load_dataset({"name": "digits", "eval_fraction": 0.3, "split_seed": 0, "image_size": 8})
    history = train_torch({"depth": 8, "width": 1}, {"epochs": 1, "optimizer": "adam", "lr": 0.001}, dataset, seed=0, checkpoint=tmp_path / "m.pt", history=tmp_path / "m.json", progress=False)
    assert history["train"]["optimizer"] == "adam" and history["eval_accuracy"] > 0.2  # 10 classes: chance 0.1


# --- the same checks through `snakemake -n` ---------------------------------------------------


def dry_run(tmp_path, config, *args):
    return run_snakemake(tmp_path, config, "-n", *args, check=False)


@pytest.mark.slow
def test_dry_run_with_a_typo_exits_non_zero_with_the_short_message(tmp_path):
    config = copy.deepcopy(TINY)
    config["seed"] = config.pop("seeds")
    result = dry_run(tmp_path, config)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "Did you mean 'seeds'?" in text
    assert len(text.splitlines()) <= 6, text


@pytest.mark.slow
def test_dry_run_with_a_partial_configfile_says_configs_replace(tmp_path):
    result = dry_run(tmp_path, {"train": {"epochs": 2}})
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "replaces config/config.yaml" in text and len(text.splitlines()) <= 6, text


@pytest.mark.slow
def test_dry_run_refuses_depth_30(tmp_path):
    config = copy.deepcopy(TINY)
    config["models"]["m8x1"]["depth"] = 30
    result = dry_run(tmp_path, config)
    assert result.returncode != 0 and "6n+2" in result.stdout + result.stderr


@pytest.mark.slow
def test_dry_run_refuses_the_alias_bomb_fast(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(TINY) + alias_bomb())
    start = time.perf_counter()
    result = dry_run(tmp_path, path)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "aliases" in text and len(text) < 2000
    assert time.perf_counter() - start < 60


@pytest.mark.slow
def test_dry_run_with_the_cifar_archive_missing_names_it(tmp_path):
    config = copy.deepcopy(TINY)
    config["dataset"] = {"name": "cifar10", "path": str(tmp_path / "data"), "image_size": 32}
    result = dry_run(tmp_path, config)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "cifar-10-python.tar.gz" in text and "cs.toronto.edu" in text


@pytest.mark.slow
def test_dry_run_of_an_unknown_model_in_a_target_lists_the_known_models(tmp_path):
    result = dry_run(tmp_path, TINY, "results/tiny/figures/heatmaps/resnet9x2-s0-e1__m8x1-s0-e1.png")
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "resnet9x2" in text and "Known models: m8x1, m8x2" in text
    assert "KeyError" not in text


@pytest.mark.slow
def test_dry_run_accepts_adam_for_torch_models(tmp_path):
    config = copy.deepcopy(TINY)
    config["train"]["optimizer"] = "adam"
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr

