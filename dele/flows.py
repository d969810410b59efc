"""The two training workflows behind ``train_predictor.py`` and
``dynamic_ensemble_train_predictor.py``: setup, stages, validation and checkpoints."""

import argparse
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dele import embedders, spaces  # noqa: F401 - importing registers the built-in components
from dele import predictors  # noqa: F401
from dele.config import (
    ConfigError,
    build_optimizer,
    build_scheduler,
    load_yaml,
    resolve_config,
    split_network_cfg,
)
from dele.data import ArchDataset, NormalizationStats, available_types, load_records, low_fidelity_matrix, split_head
from dele.fileio import atomic_write
from dele.predictors import build_arch_network
from dele.registry import load_plugins
from dele.training import (
    PairSettings,
    evaluate,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    train_epoch,
    write_output,
)

logger = logging.getLogger(__name__)

SEARCH_SPACES = ("nasbench-201", "nb301", "nds")
RESUME_NAME = "resume.ckpt"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def build_parser(ensemble, prog=None):
    """Command-line flags of the original DELE scripts, plus ``--resume`` and ``--save-every``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("cfg_file", help="YAML training config")
    parser.add_argument("--search-space", default="nasbench-201", choices=SEARCH_SPACES)
    parser.add_argument("--train-ratio", type=float, default=1.0,
                        help="fraction of the training file (its first records) with actual accuracies")
    parser.add_argument("--pretrain-ratio", type=float, default=1.0,
                        help="fraction of the training file (its first records) used for low-fidelity pretraining")
    parser.add_argument("--train-pkl", required=True, help="training records (.pkl original format, or .json)")
    parser.add_argument("--valid-pkl", required=True, help="validation records (.pkl or .json)")
    parser.add_argument("--train-dir", required=True, help="output folder for logs, checkpoints and output.pkl")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and logged)")
    parser.add_argument("--gpu", type=int, default=None,
                        help="CUDA device index; without it, or without CUDA, the run uses the CPU")
    parser.add_argument("--load", default=None, help="checkpoint to load the predictor weights from")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="accepted for compatibility; data is in memory, so no worker processes run")
    parser.add_argument("--report-freq", type=int, default=10, help="log the training loss every N epochs")
    parser.add_argument("--test-every", type=int, default=10, help="validate every N epochs (and at the last)")
    parser.add_argument("--save-every", type=int, default=10,
                        help=f"write the resumable {RESUME_NAME} every N epochs (and at each stage end)")
    parser.add_argument("--resume", action="store_true", help=f"continue from TRAIN_DIR/{RESUME_NAME}")
    parser.add_argument("--test-only", action="store_true", help="only validate the (loaded) predictor")
    if not ensemble:
        parser.add_argument("--no-pretrain", action="store_true",
                            help="train on actual accuracies only (vanilla)")
        parser.add_argument("--low-fidelity-type", default="one_shot",
                            help="low-fidelity type to pretrain on before finetuning")
    return parser


def setup_logging(train_dir, filename):
    """Log to stderr and to ``train_dir/filename``; level from ``$AWNAS_LOG_LEVEL`` (INFO)."""
    level = os.environ.get("AWNAS_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dele_run", False):
            root.removeHandler(handler)
    handlers = [logging.StreamHandler(sys.stderr), logging.FileHandler(Path(train_dir) / filename)]
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._dele_run = True
        root.addHandler(handler)
    root.setLevel(level)


def select_device(gpu):
    """Return ``cuda:<gpu>`` when requested and available, else the CPU (logged)."""
    if gpu is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        logger.warning("--gpu %d requested but CUDA is not available; using the CPU", gpu)
        return torch.device("cpu")
    if gpu >= torch.cuda.device_count():
        raise ConfigError(f"--gpu {gpu}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device(f"cuda:{gpu}")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@dataclass
class Run:
    """Everything one training run works on."""

    args: argparse.Namespace
    cfg: dict
    train_dir: Path
    device: torch.device
    space: object
    generator: torch.Generator
    types: list
    stats: NormalizationStats
    pretrain_set: ArchDataset
    real_set: ArchDataset
    valid_set: ArchDataset
    model: torch.nn.Module = None
    optimizer: object = None
    scheduler: object = None
    resume: dict = field(default_factory=dict)

    def meta(self, stage, epoch):
        """Checkpoint metadata: what is needed to rebuild, check and resume the predictor."""
        return {
            "arch_network_type": self.cfg["arch_network_type"],
            "arch_network_cfg": self.cfg["arch_network_cfg"],
            "search_space": self.space.NAME,
            "low_fidelity_types": list(self.types),
            "normalization": self.stats.to_dict(),
            "config": self.cfg,
            "seed": self.args.seed,
            "inputs": run_inputs(self.args),
            "stage": stage,
            "epoch": epoch,
        }


def load_config(args, defaults):
    cfg = resolve_config(load_yaml(args.cfg_file), defaults, args.cfg_file)
    if args.test_every < 1 or args.save_every < 1 or args.report_freq < 1:
        raise ConfigError("--test-every, --save-every and --report-freq must be >= 1")
    return cfg


def write_config(train_dir, cfg):
    """Write the resolved config to ``train_dir/config.yaml`` atomically."""
    with atomic_write(Path(train_dir) / "config.yaml", "w") as stream:
        yaml.safe_dump(cfg, stream, sort_keys=True)


def fit_statistics(records, types, normalize, path):
    if not types:
        return NormalizationStats.identity([])
    if not normalize:
        return NormalizationStats.identity(types)
    return NormalizationStats.fit(low_fidelity_matrix(records, types, path), types, path)


def run_inputs(args):
    """The data arguments a resumed run must share with the interrupted one."""
    return {
        "search_space": args.search_space,
        "train_pkl": os.path.abspath(args.train_pkl),
        "valid_pkl": os.path.abspath(args.valid_pkl),
        "pretrain_ratio": args.pretrain_ratio,
        "train_ratio": args.train_ratio,
    }


def check_train_dir(args):
    """Refuse to overwrite a previous run unless ``--resume``; with ``--resume``, take the
    seed from ``resume.ckpt`` when ``--seed`` is absent."""
    train_dir = Path(args.train_dir)
    if train_dir.exists() and not train_dir.is_dir():
        raise ConfigError(f"--train-dir {train_dir} exists and is not a folder")
    previous = [name for name in (RESUME_NAME, "final.ckpt") if (train_dir / name).exists()]
    if previous and not args.resume:
        raise ConfigError(
            f"--train-dir {train_dir} contains a previous run ({', '.join(previous)}); pass --resume "
            "to continue it, or choose another --train-dir"
        )
    if args.resume and args.seed is None and (train_dir / RESUME_NAME).is_file():
        args.seed = load_checkpoint(train_dir / RESUME_NAME).get("seed")


def prepare_run(args, cfg, types, log_name):
    """Create the train dir, logging, seeds, datasets and statistics of a run."""
    check_train_dir(args)
    train_dir = Path(args.train_dir)
    train_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(train_dir, log_name)
    load_plugins()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    logger.info("seed %d; arguments %s", args.seed, vars(args))

    device = select_device(args.gpu)
    generator = seed_everything(args.seed)
    space = spaces.get_search_space(args.search_space)
    train_records = load_records(args.train_pkl, space)
    valid_records = load_records(args.valid_pkl, space)
    pretrain_records = split_head(train_records, args.pretrain_ratio, "--pretrain-ratio")
    real_records = split_head(train_records, args.train_ratio, "--train-ratio")

    stats = fit_statistics(pretrain_records, types, cfg["low_fidelity_normalize"], args.train_pkl)
    # A file of (arch, acc) records (NB301 validation) has no scores at all. Any other file
    # must carry every type, and ArchDataset checks that record by record.
    valid_types = types if any(record.low_fidelity for record in valid_records) else []
    if types and not valid_types:
        logger.info("%s carries no low-fidelity scores: validating on actual accuracy only", args.valid_pkl)
    valid_stats = stats if valid_types else None
    logger.info("records: %d pretrain, %d with actual accuracy, %d validation; low-fidelity types %s",
                len(pretrain_records), len(real_records), len(valid_records), types)
    run = Run(
        args=args, cfg=cfg, train_dir=train_dir, device=device, space=space, generator=generator,
        types=list(types), stats=stats,
        pretrain_set=ArchDataset(pretrain_records, space, types, stats, args.train_pkl).to(device),
        real_set=ArchDataset(real_records, space, (), None, args.train_pkl).to(device),
        valid_set=ArchDataset(valid_records, space, valid_types, valid_stats, args.valid_pkl).to(device),
    )
    write_config(train_dir, cfg)
    return run


def check_checkpoint(checkpoint, run, path):
    """Raise ConfigError when a dele checkpoint was made for another predictor or types."""
    expected = run.meta(None, None)
    for key in ("search_space", "arch_network_type", "low_fidelity_types"):
        if key in checkpoint and checkpoint[key] != expected[key]:
            raise ConfigError(f"{path}: checkpoint {key} is {checkpoint[key]!r}, the config expects {expected[key]!r}")
    if "arch_network_cfg" in checkpoint:
        saved, _, _ = split_network_cfg(checkpoint["arch_network_cfg"])
        requested, _, _ = split_network_cfg(expected["arch_network_cfg"])
        if saved != requested:
            raise ConfigError(f"{path}: checkpoint arch_network_cfg {saved!r} differs from the config's {requested!r}")


def build_model(run):
    model_cfg, optimizer_cfg, scheduler_cfg = split_network_cfg(run.cfg["arch_network_cfg"])
    run.model = build_arch_network(run.cfg["arch_network_type"], run.space, model_cfg).to(run.device)
    reset_optimizer(run, run.model.parameters())
    logger.info("%s with %d parameters", run.cfg["arch_network_type"],
                sum(p.numel() for p in run.model.parameters()))


def reset_optimizer(run, parameters):
    _, optimizer_cfg, scheduler_cfg = split_network_cfg(run.cfg["arch_network_cfg"])
    run.optimizer = build_optimizer(parameters, optimizer_cfg)
    run.scheduler = build_scheduler(run.optimizer, scheduler_cfg)


def load_weights(run, path):
    """``--load``: model weights (and, from a dele checkpoint, its statistics)."""
    checkpoint = load_checkpoint(path)
    check_checkpoint(checkpoint, run, path)
    try:
        run.model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise ConfigError(f"{path}: weights do not fit the configured predictor: {error}") from None
    if checkpoint.get("normalization") and checkpoint["normalization"] != run.stats.to_dict():
        logger.warning(
            "%s was trained with other low-fidelity statistics than this run computes from %s "
            "(--pretrain-ratio %s); scores are normalised with this run's statistics. Pass the "
            "training file and --pretrain-ratio of the checkpoint's run to reproduce it",
            path, run.args.train_pkl, run.args.pretrain_ratio,
        )
    logger.info("loaded predictor weights from %s", path)


def resume_state(run):
    """Restore model, optimiser, scheduler and random states from ``resume.ckpt``."""
    path = run.train_dir / RESUME_NAME
    if not path.is_file():
        raise ConfigError(f"--resume: {path} not found")
    checkpoint = load_checkpoint(path)
    check_checkpoint(checkpoint, run, path)
    if checkpoint.get("seed") != run.args.seed:
        raise ConfigError(f"--resume: {path} was written with --seed {checkpoint.get('seed')}, not {run.args.seed}")
    check_resumed_inputs(checkpoint, run, path)
    run.model.load_state_dict(checkpoint["model"])
    run.resume = {"stage": checkpoint["stage"], "epoch": checkpoint["epoch"], "checkpoint": checkpoint}
    logger.info("resuming %s at stage %s, epoch %d", path, checkpoint["stage"], checkpoint["epoch"])


def _differences(saved, requested):
    keys = sorted(set(saved) | set(requested))
    return [f"{key}: {saved.get(key)!r} -> {requested.get(key)!r}" for key in keys if saved.get(key) != requested.get(key)]


def check_resumed_inputs(checkpoint, run, path):
    """``--resume`` continues the same run: same config and data arguments. Only
    ``--train-ratio`` may change, and only at the end of step 1, which does not read it."""
    changed = _differences(checkpoint.get("config", {}), run.cfg)
    if changed:
        raise ConfigError(f"--resume: the config differs from the one {path} was written with: {'; '.join(changed)}")

    if "inputs" not in checkpoint:  # written before checkpoints recorded their inputs
        return
    saved, requested = dict(checkpoint["inputs"]), run_inputs(run.args)
    stage_epochs = run.cfg.get("pretrain_epochs", run.cfg.get("epochs"))
    if checkpoint.get("stage") == "pretrain" and checkpoint.get("epoch") == stage_epochs:
        saved.pop("train_ratio", None)
        requested.pop("train_ratio")
    changed = _differences(saved, requested)
    if changed:
        raise ConfigError(f"--resume: arguments differ from those {path} was written with: {'; '.join(changed)}")


def restore_training_state(run):
    """Load the optimiser, scheduler and random states saved by :func:`resume_state`."""
    checkpoint = run.resume.pop("checkpoint")
    if checkpoint.get("optimizer") is not None:
        run.optimizer.load_state_dict(checkpoint["optimizer"])
    if run.scheduler is not None and checkpoint.get("scheduler") is not None:
        run.scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_state(checkpoint["rng"], run.generator)


def save(run, name, stage, epoch):
    save_checkpoint(run.train_dir / name, run.model, run.meta(stage, epoch), run.optimizer, run.scheduler, run.generator)


def validate(run, epoch, write=False, stage=None):
    evaluation = evaluate(run.model, run.valid_set)
    logger.info(evaluation.log_line(epoch, stage))
    if write:
        write_output(run.train_dir / "output.pkl", evaluation)
    return evaluation


def run_stage(run, stage, epochs, dataset, targets, write_output_file):
    """Train ``epochs`` epochs (continuing after a resumed epoch), validating every
    ``--test-every`` epochs and at the last, writing ``resume.ckpt`` every ``--save-every``."""
    start = 0
    if run.resume.get("stage") == stage:
        start = run.resume["epoch"]
        restore_training_state(run)
    settings = PairSettings.from_config(run.cfg)
    evaluation = None

    with logging_redirect_tqdm():
        progress = tqdm(range(start + 1, epochs + 1), desc=stage, initial=start, total=epochs, dynamic_ncols=True)
        for epoch in progress:
            loss = train_epoch(run.model, run.optimizer, dataset, targets, settings, run.generator,
                               run.cfg["batch_size"], progress)
            if run.scheduler is not None:
                run.scheduler.step()
            if epoch % run.args.report_freq == 0:
                logger.info("%s epoch %d: train loss %.5f", stage, epoch, loss)
            if epoch % run.args.test_every == 0 or epoch == epochs:
                evaluation = validate(run, epoch, write_output_file, stage)
            if epoch % run.args.save_every == 0 or epoch == epochs:
                save(run, RESUME_NAME, stage, epoch)
    return evaluation
