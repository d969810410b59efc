"""Training configs: YAML loading with key checks, optimiser and scheduler factories."""

import copy
import numbers

import torch
import yaml

from dele.pairs import PAIR_CRITERIA

# Keys of the original DELE training YAMLs, with their defaults.
COMMON_DEFAULTS = {
    "arch_network_type": None,
    "arch_network_cfg": {},
    "batch_size": 512,
    "choose_pair_criterion": "random",
    "compare": True,
    "compare_threshold": 0.0,
    "compare_split": False,
    "max_compare_ratio": 4.0,
    "low_fidelity_normalize": True,
    "num_workers": None,  # accepted for compatibility; data is in memory, no worker processes
}
TRAIN_PREDICTOR_DEFAULTS = {
    **COMMON_DEFAULTS,
    "arch_network_type": "pointwise_comparator",
    "epochs": 200,
    "finetune_epochs": 200,
    "finetune_only_mlp": False,
}
ENSEMBLE_DEFAULTS = {
    **COMMON_DEFAULTS,
    "arch_network_type": "dynamic_ensemble_pointwise_comparator",
    "epochs": 200,
    "pretrain_epochs": 200,
    "low_fidelity_type": None,
    # False keeps the step-1 Adam state into step 2, as the original script did.
    "reinit_optimizer": False,
}


class ConfigError(ValueError):
    """An invalid or inconsistent configuration, named by file and key."""


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value, minimum=None, strict=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    if minimum is None:
        return True
    return value > minimum if strict else value >= minimum


# Allowed values of the top-level keys: (check, description of the allowed values).
VALUE_CHECKS = {
    "batch_size": (_is_positive_int, "a positive integer"),
    "epochs": (_is_positive_int, "a positive integer"),
    "finetune_epochs": (_is_positive_int, "a positive integer"),
    "pretrain_epochs": (_is_positive_int, "a positive integer"),
    "compare": (lambda v: isinstance(v, bool), "true or false"),
    "compare_split": (lambda v: isinstance(v, bool), "true or false"),
    "low_fidelity_normalize": (lambda v: isinstance(v, bool), "true or false"),
    "finetune_only_mlp": (lambda v: isinstance(v, bool), "true or false"),
    "reinit_optimizer": (lambda v: isinstance(v, bool), "true or false"),
    "compare_threshold": (lambda v: _is_number(v, 0.0), "a number >= 0"),
    "max_compare_ratio": (lambda v: _is_number(v, 0.0, strict=True), "a number > 0"),
    "choose_pair_criterion": (lambda v: v in PAIR_CRITERIA, f"one of {list(PAIR_CRITERIA)}"),
    "num_workers": (lambda v: v is None or (isinstance(v, int) and v >= 0), "null or an integer >= 0"),
}


def load_yaml(path):
    """Read a YAML mapping with the safe loader."""
    try:
        with open(path) as stream:
            content = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(content).__name__}")
    return content


def resolve_config(content, defaults, path="<config>"):
    """Merge ``content`` over ``defaults``; an unknown key is a ConfigError."""
    unknown = sorted(set(content) - set(defaults))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(defaults)}")
    resolved = copy.deepcopy(defaults)
    resolved.update(copy.deepcopy(content))
    if not isinstance(resolved["arch_network_cfg"], dict):
        raise ConfigError(f"{path}: arch_network_cfg must be a mapping")
    for key, (check, allowed) in VALUE_CHECKS.items():
        if key in resolved and not check(resolved[key]):
            raise ConfigError(f"{path}: {key} must be {allowed}, got {resolved[key]!r}")
    return resolved


def split_network_cfg(network_cfg):
    """Split ``arch_network_cfg`` into model keyword options, optimiser and scheduler configs."""
    model_cfg = dict(network_cfg)
    optimizer_cfg = model_cfg.pop("optimizer", {"type": "Adam", "lr": 0.001})
    scheduler_cfg = model_cfg.pop("scheduler", None)
    return model_cfg, optimizer_cfg, scheduler_cfg


def build_optimizer(parameters, cfg):
    """Build a ``torch.optim`` optimiser from ``{"type": NAME, **kwargs}``; None if cfg is empty."""
    if not cfg:
        return None
    options = dict(cfg)
    name = options.pop("type", "Adam")
    cls = getattr(torch.optim, name, None)
    if not isinstance(cls, type) or not issubclass(cls, torch.optim.Optimizer):
        raise ConfigError(f"optimizer.type {name!r} is not a torch.optim optimiser")
    try:
        return cls(parameters, **options)
    except TypeError as error:
        raise ConfigError(f"invalid optimizer options for {name}: {error}") from None


def build_scheduler(optimizer, cfg):
    """Build a ``torch.optim.lr_scheduler`` scheduler; None if cfg is empty.

    The scheduler is stepped once at the end of every epoch.
    """
    if not cfg or optimizer is None:
        return None
    options = dict(cfg)
    name = options.pop("type")
    cls = getattr(torch.optim.lr_scheduler, name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"scheduler.type {name!r} is not a torch.optim.lr_scheduler class")
    try:
        return cls(optimizer, **options)
    except TypeError as error:
        raise ConfigError(f"invalid scheduler options for {name}: {error}") from None
