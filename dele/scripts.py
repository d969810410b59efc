"""Entry points of ``train_predictor.py`` and ``dynamic_ensemble_train_predictor.py``."""

import logging

from dele.config import ENSEMBLE_DEFAULTS, TRAIN_PREDICTOR_DEFAULTS, ConfigError
from dele.flows import (
    build_model,
    build_parser,
    load_config,
    load_weights,
    prepare_run,
    reset_optimizer,
    resume_state,
    run_stage,
    save,
    validate,
)

logger = logging.getLogger(__name__)


def _start(args, cfg, types, log_name):
    run = prepare_run(args, cfg, types, log_name)
    build_model(run)
    if args.resume:
        resume_state(run)
    elif args.load:
        load_weights(run, args.load)
    return run


def _test_only(run):
    if not (run.args.load or run.args.resume):
        logger.warning("--test-only without --load: validating a randomly initialised predictor")
    validate(run, 0, write=True, stage="test")


def _finish(run, evaluation, epochs):
    """Write ``final.ckpt`` and log the final tau, or that a resumed run had nothing left to train."""
    save(run, "final.ckpt", "finetune", epochs)
    if evaluation is None:
        logger.info("the run in %s had already finished (finetune epoch %d), so nothing was trained. "
                    "Its results are in output.pkl", run.train_dir, epochs)
        return
    logger.info("final kendall tau %.4f", evaluation.tau)


def train_predictor_main(argv=None):
    """Vanilla training (``--no-pretrain``), or pretraining on one low-fidelity type and
    finetuning on actual accuracies. Writes ``pre_train.ckpt``, ``final.ckpt``, ``output.pkl``."""
    args = build_parser(ensemble=False, prog="train_predictor.py").parse_args(argv)
    cfg = load_config(args, TRAIN_PREDICTOR_DEFAULTS)
    types = [] if args.no_pretrain else [args.low_fidelity_type]
    run = _start(args, cfg, types, "train.log")
    if args.test_only:
        _test_only(run)
        return run

    if types and run.resume.get("stage") != "finetune":
        run_stage(run, "pretrain", cfg["epochs"], run.pretrain_set, run.pretrain_set.target(types[0]), False)
        save(run, "pre_train.ckpt", "pretrain", cfg["epochs"])
    if types or run.resume.get("stage") == "finetune":
        parameters = run.model.mlp.parameters() if cfg["finetune_only_mlp"] else run.model.parameters()
        reset_optimizer(run, parameters)

    evaluation = run_stage(run, "finetune", cfg["finetune_epochs"], run.real_set, run.real_set.accs, True)
    _finish(run, evaluation, cfg["finetune_epochs"])
    return run


def check_ensemble_config(cfg, path):
    """The types list must be non-empty and match ``auxiliary_head_num``."""
    types = cfg["low_fidelity_type"]
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise ConfigError(f"{path}: low_fidelity_type must be a non-empty list of type names, got {types!r}")
    if len(set(types)) != len(types):
        raise ConfigError(f"{path}: low_fidelity_type lists a type twice: {types}")
    heads = cfg["arch_network_cfg"].get("auxiliary_head_num")
    if heads != len(types):
        raise ConfigError(
            f"{path}: arch_network_cfg.auxiliary_head_num is {heads!r} but low_fidelity_type lists "
            f"{len(types)} types {types}; they must be equal"
        )
    return types


def dynamic_ensemble_main(argv=None):
    """DELE: step 1 trains expert k on low-fidelity type k (``pre_final.ckpt``); step 2
    trains experts and gate on actual accuracies (``final.ckpt``, ``output.pkl``)."""
    args = build_parser(ensemble=True, prog="dynamic_ensemble_train_predictor.py").parse_args(argv)
    cfg = load_config(args, ENSEMBLE_DEFAULTS)
    types = check_ensemble_config(cfg, args.cfg_file)
    run = _start(args, cfg, types, "train.log")
    if args.test_only:
        _test_only(run)
        return run

    if run.resume.get("stage") != "finetune":
        run_stage(run, "pretrain", cfg["pretrain_epochs"], run.pretrain_set, run.pretrain_set.low_fidelity, False)
        save(run, "pre_final.ckpt", "pretrain", cfg["pretrain_epochs"])
    if cfg["reinit_optimizer"]:
        reset_optimizer(run, run.model.parameters())

    evaluation = run_stage(run, "finetune", cfg["epochs"], run.real_set, run.real_set.accs, True)
    _finish(run, evaluation, cfg["epochs"])
    return run
