"""The workflow's config: read, defaults filled from ``workflow/schemas/config.schema.yaml`` and
checked in one step (:func:`load_workflow_config`; docs/design.md, "Config")."""

from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path

import yaml

from layersim.errors import LayersimError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = "config/config.yaml"
_SHOWN = 60  # characters of a value shown in a message


class ConfigError(LayersimError):
    """A config that cannot be used; the message has one paragraph per problem."""


# --- reading -------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases and with duplicate keys an error."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"{self.name}, line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not "
                "allowed in a layersim config; write the value out where it is used."
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(
                    f"{self.name}, line {key_node.start_mark.line + 1}: key {str(key)[:_SHOWN]!r} appears twice "
                    f"in one mapping (first on line {seen[key] + 1}); keep one."
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_config_file(path: str | os.PathLike) -> dict:
    """A YAML config file as a dict; aliases, duplicate keys and YAML syntax errors are a
    :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot be read ({err.strerror})") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict | None):  # None: an empty file
        raise ConfigError(f"{path}: a config is a mapping of sections (experiment:, models:, ...), not a {type(data).__name__}")
    return data or {}


# --- the schema ----------------------------------------------------------------------------


def load_schema(path: str | os.PathLike | None = None) -> dict:
    return yaml.safe_load(Path(path or SCHEMA_PATH).read_text())


def _validator_class():
    """Draft 2020-12 that fills each property's default before validating it (the recipe of
    Snakemake's ``validate(set_default=True)``, so the filled config is the same)."""
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": fill_defaults})


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _nearest(name, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _describe(error) -> str:
    """One short paragraph for one jsonschema error."""
    where = _path(error.absolute_path)
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        return " ".join(
            f"{_path([*error.absolute_path, k])}: unknown key {str(k)[:_SHOWN]!r} in {where}.{_nearest(k, allowed)} "
            f"Allowed keys: {', '.join(allowed)}."
            for k in value if k not in allowed
        )
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"{where}: the required key {', '.join(missing)} is missing."
    if kind == "enum":
        allowed = error.validator_value
        return f"{where}: {_shown(value)} is not allowed.{_nearest(value, allowed)} Allowed: {', '.join(map(str, allowed))}."
    if kind == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{where}: {_shown(value)} is a {type(value).__name__}; expected {' or '.join(types)}."
    if kind == "pattern":  # of a value, or of a key (propertyNames)
        rule = f"it must match {error.validator_value} (no trailing newline)"
        return f"{where}: {_shown(value)} is not a valid name: {rule}."
    if kind == "maxLength":
        return f"{where}: {_shown(value)} has {len(value)} characters; at most {error.validator_value} allowed."
    bounds = {"minimum": "≥", "maximum": "≤", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"{where}: {_shown(value)} is out of range; it must be {bounds[kind]} {error.validator_value}."
    if kind in ("minItems", "maxItems", "minProperties", "uniqueItems"):
        what = {"minItems": f"at least {error.validator_value} items", "maxItems": f"at most {error.validator_value} items",
                "minProperties": f"at least {error.validator_value} entries", "uniqueItems": "no repeated items"}[kind]
        return f"{where}: needs {what}; got {_shown(value)}."
    if kind == "not":
        return f"{where}: {_shown(value)} is not allowed here."
    return f"{where}: {error.message[:200]}"


def _nodes(value, parts=()):
    """``(path parts, value)`` of a config and of every value in it, depth first."""
    yield parts, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _nodes(v, (*parts, k))


_NAME_KEYS = {"experiment", "model", "device", "layer", "format", "name"}


def _value_problems(config: dict) -> list[str]:
    """NaN or infinite numbers, and names (model names, the experiment) ending in a line break:
    ``$`` of a JSON-schema pattern (Python's re.search) matches before a final newline, so the
    schema cannot refuse them."""
    nodes = list(_nodes(config))
    problems = [f"{_path(parts)}: {value} is not a finite number; give a finite one."
                for parts, value in nodes if isinstance(value, float) and not math.isfinite(value)]
    for parts, value in nodes:
        key = parts[-1] if parts else None
        if isinstance(key, str) and key != key.rstrip("\r\n"):
            problems.append(f"{_path(parts)}: the name {key!r} ends in a line break; remove it.")
        if isinstance(value, str) and value != value.rstrip("\r\n") and key in _NAME_KEYS:
            problems.append(f"{_path(parts)}: {value!r} ends in a line break; remove it.")
    return problems


def validate_config(config: dict, *, schema_path: str | os.PathLike | None = None, configfiles=()) -> dict:
    """Fill ``config``'s defaults from the schema (in place) and check it; returns it.

    Raises :class:`ConfigError` with one paragraph per problem. ``configfiles``: the files the
    config came from (named in the message for a partial config)."""
    schema = load_schema(schema_path)
    problems = _value_problems(config)
    missing = [k for k in schema.get("required", []) if k not in config]
    if missing:
        given = ", ".join(map(str, configfiles)) or "the config"
        problems.append(
            f"{given} has no {', '.join(k + ':' for k in missing)} section. A config given with --configfile "
            f"replaces {DEFAULT_CONFIG} instead of being merged with it, so it must be complete: copy "
            f"{DEFAULT_CONFIG} (or a file of config/experiments/) and edit the copy."
        )
    if not problems:
        validator = _validator_class()(schema)
        errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
        problems += [_describe(e) for e in errors]
    if not problems:
        problems += cross_checks(config)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"- {p}" for p in dict.fromkeys(problems)))
    return config


# --- checks across sections ----------------------------------------------------------------


def train_settings(config: dict, model: str) -> dict:
    """The global training settings merged with the model's own overrides."""
    return {**config["train"], **config["models"][model].get("train", {})}


def model_problem(config: dict, name, where: str, torch_only: str = "") -> str | None:
    """Why ``name`` cannot be used at ``where`` (None if it can): it is not under models:, or it
    is a keras model where ``torch_only`` (the reason) is given."""
    models = config["models"]
    if name not in models:
        known = ", ".join(models)
        return f"{where}: {_shown(name)} is not a model under models:.{_nearest(name, models)} Known models: {known}."
    if torch_only and models[name]["framework"] != "torch":
        return f"{where}: {name!r} is a keras model; {torch_only}."
    return None


def _unknown_names(names, where: str, registry, registry_name: str) -> list[str]:
    return [
        f"{where}: unknown metric {_shown(n)}.{_nearest(n, registry)} Known ({registry_name}): {', '.join(registry)}."
        for n in names if n not in registry
    ]


def dataset_problem(dataset: dict, where: str) -> str | None:
    """Why a dataset: section's data is not there (None if it is, or needs no file): a CIFAR
    archive (or its extracted directory) missing from dataset.path, named with where to get it."""
    if dataset["name"] == "digits":
        return None
    from layersim.data.cifar import _available, _candidates, resolve_source

    if not dataset["path"]:
        return f"{where}.path: {dataset['name']} needs the directory holding its archive; download it from https://www.cs.toronto.edu/~kriz/cifar.html and set {where}.path."
    path = Path(dataset["path"]).expanduser()
    try:
        source = resolve_source(path, dataset["name"], dataset["fmt"])  # fmt null: finds what exists
    except LayersimError as err:
        return f"{where}.path: {err}"
    if _available(path, source):
        return None
    names = " or ".join(str(p) for p in _candidates(path, source) if p)
    return f"{where}.path: {names} does not exist; download {source.archive} from https://www.cs.toronto.edu/~kriz/cifar.html into {path}."


def architecture_problem(config: dict, model: str) -> str | None:
    """Why ``model``'s architecture cannot be built for the configured dataset (None if it can):
    the model builders' own checks, run without training. A torch model is built on the meta
    device (its depth and width checks, no memory), then its forward pass's input-side checks run
    on one zero image through the same architecture at width ≤ 1 on the CPU (the spatial path does
    not depend on width; a meta-device forward would load torch's compiler, seconds a command)."""
    arch = {k: v for k, v in config["models"][model].items() if k != "train"}
    channels = 1 if config["dataset"]["name"] == "digits" else 3
    side = config["dataset"]["image_size"]
    try:
        if config["models"][model]["framework"] == "torch":
            import torch

            from layersim.models.torch import build_torch_model

            with torch.device("meta"):
                build_torch_model(arch, num_classes=10, in_channels=channels)
            width = arch.get("width", 1)
            narrow = {**arch, "width": width if width <= 1 else type(width)(1)}
            with torch.no_grad():
                build_torch_model(narrow, num_classes=10, in_channels=channels).eval()(torch.zeros(1, channels, side, side))
        else:
            from layersim.models.keras import check_keras_arch

            check_keras_arch(arch, input_shape=(side, side, channels))
    except LayersimError as err:
        return f"models.{model}: {err}"
    return None


def cross_checks(config: dict) -> list[str]:
    """Every check relating one part of a (schema-valid, defaults filled) config to another or
    to the package's registries; one paragraph per problem."""
    from layersim.engine.grams import GRAM_KERNELS
    from layersim.experiments.kornblith import IDENTIFICATION_METRICS
    from layersim.metrics import METRICS

    problems = []
    add = problems.append
    models, seeds, papers = config["models"], config["seeds"], config["papers"]
    for model in models:
        add(architecture_problem(config, model))
        if models[model]["framework"] == "torch":
            for key in ("mixed_precision", "xla"):
                if train_settings(config, model)[key]:
                    add(f"models.{model}.train.{key} (or train.{key}): applies to keras models only; {model} is a "
                        "torch model, remove it.")
    for i, pair in enumerate(config["similarity"]["compare"]["pairs"]):
        problems += [model_problem(config, name, f"similarity.compare.pairs[{i}]") for name in pair]
    metric_names = (METRICS, "layersim.metrics.METRICS")  # a registry and its name in messages
    problems += _unknown_names(config["metrics"]["names"], "metrics.names", *metric_names)
    kernel = config["similarity"]["gram_kernel"]
    if kernel != "auto" and kernel not in GRAM_KERNELS:
        add(f"similarity.gram_kernel: unknown Gram kernel {_shown(kernel)}.{_nearest(kernel, GRAM_KERNELS)} Known: auto, {', '.join(GRAM_KERNELS)}.")
    add(dataset_problem(config["dataset"], "dataset"))

    nguyen = papers["nguyen"]["block_structure"]
    if nguyen["enabled"]:
        depths = {c["depth"] for c in models.values() if c["family"] == "resnet"}
        problems += [f"papers.nguyen.block_structure.width_series_depths: lists depth {depth}, but no resnet model has it (resnet depths: {', '.join(map(str, sorted(depths))) or 'none'})."
                     for depth in nguyen["width_series_depths"] if depth not in depths]
    # every enabled paper's model: and metrics:
    torch_only = {"architectures": "the experiment compares torch models",
                  "representation_sets": "it must name a torch model"}  # why a keras model cannot be used
    identification = (IDENTIFICATION_METRICS, "layersim.experiments.kornblith.IDENTIFICATION_METRICS")
    enabled = {name: paper for name, paper in papers.items() if paper.get("enabled")}
    for name, paper in enabled.items():
        if "model" in paper:
            add(model_problem(config, paper["model"], f"papers.{name}.model", torch_only.get(name, "")))
        if "metrics" in paper:
            registry = identification if name == "kornblith" else metric_names
            problems += _unknown_names(paper["metrics"], f"papers.{name}.metrics", *registry)
    if "kornblith" in enabled and len(seeds) < 2:
        add("papers.kornblith: layer identification compares the seeds of one model; seeds: needs at least 2.")
    if "checkpoints" in enabled:
        chosen = papers["checkpoints"]["models"]
        bad = [model_problem(config, m, "papers.checkpoints.models") for m in chosen]
        problems += bad
        if not any(bad) and len({train_settings(config, m)["epochs"] for m in chosen}) > 1:
            add("papers.checkpoints.models: must all train for the same number of epochs.")
    if "architectures" in enabled:
        chosen = papers["architectures"]["models"] or list(models)
        where = "papers.architectures.models"
        problems += [model_problem(config, m, where, torch_only["architectures"]) for m in chosen]
        if len(chosen) * len(seeds) < 2:
            add("papers.architectures: compares pairs of instances; it needs at least 2 (models × seeds).")
    rs = papers["representation_sets"]
    if rs["enabled"]:
        if not rs["train_on"] or not rs["test_on"]:
            add("papers.representation_sets: needs at least one dataset in train_on and one in test_on.")
        for name, entry in rs["datasets"].items():
            add(dataset_problem(entry["source"], f"papers.representation_sets.datasets.{name}.source"))
        problems += [f"papers.representation_sets.{key}: {name!r} is not under its datasets:.{_nearest(name, rs['datasets'])} Known: {', '.join(rs['datasets']) or 'none'}."
                     for key in ("train_on", "test_on") for name in rs[key] if name not in rs["datasets"]]
        n_trained = len(rs["train_on"]) + (1 if rs["untrained"] else 0)
        if rs["train_on"] and rs["test_on"] and n_trained * len(seeds) * len(rs["test_on"]) < 2:
            add("papers.representation_sets: gives fewer than 2 representation sets; add seeds, datasets or untrained: true.")
    return [p for p in problems if p]


def check_model_name(config: dict, name: str, where: str = "the requested path") -> str:
    """``name`` if it is under models:, else a :class:`ConfigError` listing the known models."""
    if name not in config["models"]:
        raise ConfigError(f"{where} names model {name!r}, which is not under models:.{_nearest(name, config['models'])} Known models: {', '.join(config['models'])}.")
    return name


def load_workflow_config(config: dict, configfiles, *, schema_path=None) -> dict:
    """What common.smk calls (docs/design.md, "Config"): ``config`` is Snakemake's merge of
    ``configfiles`` and ``--config``, validated in place."""
    for path in configfiles:
        read_config_file(path)
    return validate_config(config, schema_path=schema_path, configfiles=configfiles)


# --- training settings ---------------------------------------------------------------------


class TrainConfigError(ConfigError):
    """Training settings that cannot be used."""


def train_defaults() -> dict:
    """The default training settings: the schema's ``$defs.train`` defaults (their one source)."""
    props = load_schema()["$defs"]["train"]["properties"]
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in v}


def train_config(train_cfg: dict | None) -> dict:
    """``train_cfg`` with every missing key taken from :func:`train_defaults`, checked against the
    schema's ``$defs.train`` (where ``epochs`` may also be 0); each problem is a paragraph of one
    :class:`TrainConfigError`."""
    cfg = {**train_defaults(), **(train_cfg or {})}
    schema = {"properties": {"train": load_schema()["$defs"]["train"]}}
    schema["properties"]["train"]["properties"]["epochs"]["minimum"] = 0  # 0: the model at initialisation
    problems = [_describe(e) for e in _validator_class()(schema).iter_errors({"train": cfg})]
    if problems:
        raise TrainConfigError("invalid training settings:\n" + "\n".join(f"- {p}" for p in problems))
    return cfg
