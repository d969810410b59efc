"""Predictor quality on NAS-Bench-301 (NASLib's zc_nasbench301.json): vanilla GATES
(``cellss-flow``), vanilla LSTM (``nb301-lstm``) and DELE with GATES experts, trained on
10, 25 and 50 architectures with actual accuracy, over several seeds.

The data is converted once with the fixed split of ``python -m dele.convert naslib
--search-space nb301`` (seed-0 permutation: 363 training, 362 validation architectures).
A run with n actual-accuracy samples passes ``--train-ratio (n + 0.5) / 363``, so that the
scripts' ``floor(363 * ratio)`` is exactly n. DELE pretrains its 12 experts on the
low-fidelity scores of all 363 training architectures.

Each run is a real call of ``train_predictor.py`` or ``dynamic_ensemble_train_predictor.py``
with the shipped configs. Its Kendall's tau on the 362 validation architectures is read
from the ``output.pkl`` it writes. Finished runs (those with ``final.ckpt``) are skipped,
so the script can be interrupted and started again. DELE's step 1 does not depend on
``--train-ratio``. So for each seed, the first sample count runs both steps and the
others start step 2 with ``--resume`` from its ``pre_final.ckpt``, which carries the
model, optimiser and random states. That gives the same result as a full run.

Usage:
    nice -n 10 python benchmarks/nb301_quality.py
"""

import argparse
import json
import math
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dele.metrics import kendall_tau  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "naslib" / "zc_nasbench301.json"
RUNS = ROOT / "benchmarks" / "runs" / "nb301"
RESULTS = ROOT / "benchmarks" / "results" / "nb301.md"
TRAIN_SIZE = 363  # training part of the fixed split
# model name -> (script, config, extra flags)
MODELS = {
    "gates": ("train_predictor.py", "cfgs/train_nb301_gates_config.yaml", ["--no-pretrain"]),
    "lstm": ("train_predictor.py", "cfgs/train_nb301_lstm_config.yaml", ["--no-pretrain"]),
    "dele": ("dynamic_ensemble_train_predictor.py", "cfgs/dynamic_ensemble_nb301_gates_config.yaml", []),
}
MODEL_TITLES = {"gates": "vanilla GATES", "lstm": "vanilla LSTM", "dele": "DELE (GATES experts)"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_DATA, help="NASLib zc_nasbench301.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, nargs="+", default=[10, 25, 50],
                        help="numbers of training architectures with actual accuracy")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs-dir", type=Path, default=RUNS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def convert_data(path, runs_dir):
    """Convert the NASLib file once into ``runs_dir/data`` with the fixed split."""
    target = runs_dir / "data"
    if not (target / "valid.json").exists():
        subprocess.run([sys.executable, "-m", "dele.convert", "naslib", "--search-space", "nb301", "--input",
                        str(path), "--out-dir", str(target), "--format", "json", "--seed", "0",
                        "--train-size", str(TRAIN_SIZE)], check=True, cwd=ROOT)
    return target / "train.json", target / "valid.json"


def train_ratio(samples):
    """Return the ratio whose ``floor(TRAIN_SIZE * ratio)`` is ``samples``."""
    ratio = (samples + 0.5) / TRAIN_SIZE
    assert int(TRAIN_SIZE * ratio) == samples
    return ratio


def run_dir(runs_dir, model, seed, samples):
    return runs_dir / model / f"seed{seed}" / f"n{samples}"


def command(model, seed, samples, data, directory):
    script, cfg, extra = MODELS[model]
    train, valid = data
    return [sys.executable, script, cfg, "--search-space", "nb301", "--train-ratio", repr(train_ratio(samples)),
            "--train-pkl", str(train), "--valid-pkl", str(valid), "--train-dir", str(directory),
            "--seed", str(seed), *extra]


def execute(cmd, directory, threads):
    """Run one training command unless ``directory`` already contains its ``final.ckpt``."""
    if (directory / "final.ckpt").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    with open(directory / "stdout.log", "w") as log:
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    (directory / "wall_time.json").write_text(json.dumps({"seconds": seconds, "command": cmd}))
    print(f"done {directory} in {seconds:.0f} s", flush=True)


def run_model(model, args, data):
    """Run every seed and sample count of one model. DELE reuses each seed's step 1."""
    for seed in args.seeds:
        first_dir = None
        for samples in args.samples:
            directory = run_dir(args.runs_dir, model, seed, samples)
            cmd = command(model, seed, samples, data, directory)
            if model == "dele" and first_dir is not None and not (directory / "final.ckpt").exists():
                directory.mkdir(parents=True, exist_ok=True)
                if not (directory / "resume.ckpt").exists():
                    shutil.copy(first_dir / "pre_final.ckpt", directory / "resume.ckpt")
                cmd.append("--resume")
            execute(cmd, directory, args.threads)
            first_dir = first_dir or directory


def final_tau(directory):
    """Kendall's tau of the last validation in ``directory/output.pkl`` (NaN if absent)."""
    path = directory / "output.pkl"
    if not path.exists():
        return math.nan
    with open(path, "rb") as stream:
        output = pickle.load(stream)
    return kendall_tau(np.asarray(output["real_acc"]), np.asarray(output["score"]))


def wall_time(directory):
    path = directory / "wall_time.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else math.nan


def summary(values):
    """Return ``mean ± std`` of the finite values (``—`` if none)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "—"
    spread = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.mean(finite):.4f} ± {spread:.4f}"


def table(args):
    """Markdown table: one row per model and sample count, one column per seed."""
    seeds = " | ".join(f"seed {seed}" for seed in args.seeds)
    lines = [f"| samples | predictor | {seeds} | mean ± std | mean time per run (s) |",
             "|---" * (len(args.seeds) + 4) + "|"]
    for samples in args.samples:
        for model in args.models:
            directories = [run_dir(args.runs_dir, model, seed, samples) for seed in args.seeds]
            taus = [final_tau(directory) for directory in directories]
            times = [wall_time(directory) for directory in directories]
            cells = " | ".join("—" if math.isnan(tau) else f"{tau:.4f}" for tau in taus)
            finite_times = [t for t in times if not math.isnan(t)]
            mean_time = f"{statistics.mean(finite_times):.0f}" if finite_times else "—"
            lines.append(f"| {samples} | {MODEL_TITLES[model]} | {cells} | {summary(taus)} | {mean_time} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    data = convert_data(args.input, args.runs_dir)
    for model in args.models:
        run_model(model, args, data)

    text = table(args)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        "# NAS-Bench-301 predictor quality (NASLib zc_nasbench301.json, fixed split)\n\n"
        "Kendall's tau on the 362 validation architectures after the last epoch, for predictors "
        "trained on the first n of the 363 training architectures (DELE also pretrains on the "
        "low-fidelity scores of all 363). Configs: cfgs/train_nb301_gates_config.yaml, "
        "cfgs/train_nb301_lstm_config.yaml, cfgs/dynamic_ensemble_nb301_gates_config.yaml. "
        "DELE runs after the first sample count of a seed reuse its step 1, so their time "
        "covers step 2 only.\n\n"
        f"Command: `python benchmarks/nb301_quality.py {' '.join(sys.argv[1:])}`, "
        f"{args.threads} torch thread(s) per run, on {platform.machine()} with {os.cpu_count()} CPU cores "
        f"(torch {torch.__version__}).\n\n{text}\n"
    )


if __name__ == "__main__":
    main()
