"""``dele search CFG``: architecture search from an aw_nas search YAML.

The YAML has aw_nas's top-level keys: ``rollout_type`` and a ``<component>_type`` /
``<component>_cfg`` pair for each of search_space, dataset, controller, evaluator,
weights_manager, objective and trainer. dele builds the search space, controller,
evaluator and trainer. The dataset, weights manager and objective, which aw_nas built
without using them for a table-based search, are accepted and logged as unused.

Relative file paths in the YAML are resolved against the YAML's folder:
``controller_cfg.pretrained_predictor_path``, and ``evaluator_cfg.table_path`` /
``benchmark_path``, which are also looked up in aw_nas's data folder (``$AWNAS_DATA``,
else ``$AWNAS_HOME/data``, else ``~/awnas/data``). ``--table`` and
``--pretrained-predictor`` override them.
"""

import argparse
import copy
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from dele import embedders, predictors, spaces  # noqa: F401 - importing registers the built-in components
from dele.config import ConfigError, load_yaml
from dele.fileio import atomic_write
from dele.flows import seed_everything, select_device, setup_logging
from dele.registry import awnas_home, load_plugins
from dele.search.base import build_component
from dele.search.loop import CHECKPOINT_NAME, CSV_NAME, SUMMARY_NAME

logger = logging.getLogger(__name__)

COMPONENTS = ("search_space", "dataset", "controller", "evaluator", "weights_manager", "objective", "trainer")
UNUSED_COMPONENTS = ("dataset", "weights_manager", "objective")
REQUIRED_TYPES = ("search_space_type", "controller_type", "evaluator_type", "trainer_type")
TOP_LEVEL_KEYS = frozenset({"rollout_type"} | {f"{name}_{part}" for name in COMPONENTS for part in ("type", "cfg")})
DATA_PATH_KEYS = ("table_path", "benchmark_path")
NO_PREDICTOR = "none"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="dele search",
        description="Architecture search (predictor-based, random or evolutionary) on a benchmark table.",
    )
    parser.add_argument("cfg_file", help="aw_nas search YAML, e.g. cfgs/nasbench-201_gates_search.yaml")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: the resumed run's seed, else drawn and logged)")
    parser.add_argument("--gpu", type=int, default=None,
                        help="CUDA device index for the predictor; without it, or without CUDA, the CPU is used")
    parser.add_argument("--train-dir", default=None,
                        help="output folder (default: a new ./search-<date>-<time>); required with --resume")
    parser.add_argument("--save-every", type=int, default=None,
                        help=f"write the resumable TRAIN_DIR/{CHECKPOINT_NAME} every N epochs")
    parser.add_argument("--resume", action="store_true", help=f"continue from TRAIN_DIR/{CHECKPOINT_NAME}")
    parser.add_argument("--pretrained-predictor", default=None, metavar="PATH",
                        help="predictor checkpoint replacing controller_cfg.pretrained_predictor_path "
                             f"(relative to the current folder); '{NO_PREDICTOR}' searches without one")
    parser.add_argument("--table", default=None, metavar="PATH",
                        help="benchmark CSV replacing evaluator_cfg.table_path (relative to the current folder)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def data_dir():
    """Return aw_nas's data folder: ``$AWNAS_DATA``, else ``<AWNAS_HOME>/data``."""
    override = os.environ.get("AWNAS_DATA")
    if override:
        return Path(os.path.abspath(os.path.expanduser(override)))
    return awnas_home() / "data"


def _resolve_data_path(value, config_dir, key):
    """Resolve a relative table path against the config folder, then aw_nas's data folder."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    candidates = [config_dir / path, data_dir() / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise ConfigError(
        f"{key}: {value} not found as {candidates[0]} or {candidates[1]}. "
        "Pass the file with --table PATH (see the comments in cfgs/nasbench-201_gates_search.yaml)"
    )


def resolve_search_config(path, *, table=None, pretrained_predictor=None):
    """Read a search YAML, check its keys and make its file paths absolute.

    ``table`` and ``pretrained_predictor`` are command-line overrides, relative to the
    current folder; ``pretrained_predictor="none"`` removes the pretrained predictor.
    """
    content = load_yaml(path)
    unknown = sorted(set(content) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(TOP_LEVEL_KEYS)}")
    missing = [key for key in REQUIRED_TYPES if not content.get(key)]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {missing}")
    cfg = copy.deepcopy(content)
    for name in COMPONENTS:
        section = cfg.get(f"{name}_cfg")
        if section is None:
            cfg[f"{name}_cfg"] = {}
        elif not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}_cfg must be a mapping, got {type(section).__name__}")

    config_dir = Path(path).resolve().parent
    evaluator_cfg = cfg["evaluator_cfg"]
    if table is not None:
        evaluator_cfg.pop("benchmark_path", None)
        evaluator_cfg["table_path"] = str(Path(table).expanduser().resolve())
    for key in DATA_PATH_KEYS:
        if evaluator_cfg.get(key):
            evaluator_cfg[key] = str(_resolve_data_path(evaluator_cfg[key], config_dir, f"evaluator_cfg.{key}"))

    controller_cfg = cfg["controller_cfg"]
    if pretrained_predictor is not None:
        if cfg["controller_type"] != "predictor-based":
            raise ConfigError(f"--pretrained-predictor needs controller_type predictor-based, not {cfg['controller_type']!r}")
        if pretrained_predictor.lower() == NO_PREDICTOR:
            controller_cfg["pretrained_predictor_path"] = None
            controller_cfg["use_pretrained_from_start"] = False
        else:
            controller_cfg["pretrained_predictor_path"] = str(Path(pretrained_predictor).expanduser().resolve())
    elif controller_cfg.get("pretrained_predictor_path"):
        controller_cfg["pretrained_predictor_path"] = str((config_dir / Path(
            controller_cfg["pretrained_predictor_path"]).expanduser()).resolve())
    return cfg


def _check_train_dir(train_dir, resume):
    existing = [name for name in (CSV_NAME, CHECKPOINT_NAME, SUMMARY_NAME) if (train_dir / name).exists()]
    if existing and not resume:
        raise ConfigError(
            f"{train_dir} already contains a search ({', '.join(existing)}); "
            "pass --resume to continue it or choose another --train-dir"
        )
    if resume and not (train_dir / CHECKPOINT_NAME).is_file():
        raise ConfigError(f"--resume: {train_dir / CHECKPOINT_NAME} not found (it is written with --save-every N)")


def _checkpoint_seed(path):
    return torch.load(path, map_location="cpu", weights_only=True).get("seed")


def build_search(cfg, seed, device):
    """Build the search space, controller, evaluator and trainer; return ``(trainer, rng, generator)``."""
    generator = seed_everything(seed)
    rng = np.random.default_rng(seed)
    space = build_component("search_space", cfg["search_space_type"], cfg["search_space_cfg"], "search_space")
    if cfg.get("rollout_type") not in (None, space.NAME):
        raise ConfigError(f"rollout_type {cfg['rollout_type']!r} does not match search_space_type {space.NAME!r}")
    if cfg["search_space_cfg"].get("load_nasbench"):
        logger.info("search_space_cfg.load_nasbench is ignored: accuracies come from the evaluator")
    for name in UNUSED_COMPONENTS:
        if cfg.get(f"{name}_type"):
            logger.info("%s_type %r is not used by a table-based search", name, cfg[f"{name}_type"])

    search_controller = build_component(
        "controller", cfg["controller_type"], cfg["controller_cfg"], "controller",
        search_space=space, rng=rng, torch_generator=generator, device=device,
    )
    search_evaluator = build_component(
        "evaluator", cfg["evaluator_type"], cfg["evaluator_cfg"], "evaluator", search_space=space
    )
    trainer = build_component(
        "trainer", cfg["trainer_type"], cfg["trainer_cfg"], "trainer",
        controller=search_controller, evaluator=search_evaluator,
    )
    return trainer, rng, generator


def run_search(cfg, train_dir, *, seed=None, gpu=None, save_every=None, resume=False, progress=True):
    """Run (or resume) one search with a resolved config; return its summary dict."""
    train_dir = Path(train_dir)
    if save_every is not None and save_every < 1:
        raise ConfigError(f"--save-every must be >= 1, got {save_every}")
    train_dir.mkdir(parents=True, exist_ok=True)
    _check_train_dir(train_dir, resume)
    setup_logging(train_dir, "search.log")
    load_plugins()

    if seed is None and resume:
        seed = _checkpoint_seed(train_dir / CHECKPOINT_NAME)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    logger.info("search in %s with seed %d", train_dir, seed)
    with atomic_write(train_dir / "config.yaml", "w") as stream:
        yaml.safe_dump(cfg, stream, sort_keys=False)

    trainer, rng, generator = build_search(cfg, seed, select_device(gpu))
    meta = {"seed": seed, "controller_type": cfg["controller_type"], "config": cfg}
    if resume:
        trainer.load_checkpoint(train_dir / CHECKPOINT_NAME, rng, generator, meta)
    return trainer.run(train_dir, rng, generator, save_every=save_every, meta=meta, progress=progress)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.resume and args.train_dir is None:
        raise ConfigError("--resume needs --train-dir")
    train_dir = args.train_dir or f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = resolve_search_config(args.cfg_file, table=args.table, pretrained_predictor=args.pretrained_predictor)
    run_search(cfg, train_dir, seed=args.seed, gpu=args.gpu, save_every=args.save_every,
               resume=args.resume, progress=not args.no_progress)
    return 0
