"""Compare search strategies on NAS-Bench-201 CIFAR-10 under the shipped query budget.

Every method runs ``cfgs/nasbench-201_gates_search.yaml`` (10 epochs x 5 queries = 50
queries) with its controller replaced, once per seed, on the NASWOT table: the reward is
the CIFAR-10 validation accuracy and the test accuracy of the returned architecture is
reported. Methods:

* ``random``: random search (``controller_type: random``);
* ``evolution``: regularized evolution (``controller_type: evo`` with the inner
  controller settings of the config: population 20, tournament 5);
* ``predictor-scratch``: predictor-based search, the predictor trained from scratch;
* ``predictor-dele``: predictor-based search from DELE's step-1 ``pre_final.ckpt``
  (the original behaviour: random proposals until 20 architectures are evaluated);
* ``predictor-dele-start``: the same checkpoint, ranking proposals from the first epoch
  (``use_pretrained_from_start: true``).

Each run writes into ``RUNS_DIR/<method>/seed<k>/``; a run whose ``summary.json``
exists is skipped, so an interrupted benchmark continues where it stopped. The markdown
table (with the command and the mean wall time of one search) is printed and written to
``benchmarks/results/search.md``.

Example::

    nice -n 10 python benchmarks/search_comparison.py \\
        --pretrained-predictor runs/dele_nb201/pre_final.ckpt --seeds 0-19
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from dele.fileio import atomic_write
from dele.search.base import Rollout
from dele.search.cli import resolve_search_config, run_search
from dele.search.evaluator import BenchmarkTable
from dele.search.loop import SUMMARY_NAME
from dele.spaces.nb201 import NasBench201SearchSpace, matrix_from_edges, matrix_to_string

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO_ROOT / "cfgs" / "nasbench-201_gates_search.yaml"
# The benchmark data folder beside the repository, as in tests/conftest.py.
DATA_DIR = Path(os.environ.get("DELE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
DEFAULT_TABLE = DATA_DIR / "nb201" / "naswot_nb201_cifar10.csv"
METHODS = {
    "random": "random search",
    "evolution": "regularized evolution",
    "predictor-scratch": "predictor-based, from scratch",
    "predictor-dele": "predictor-based, from DELE pre_final.ckpt",
    "predictor-dele-start": "predictor-based, DELE pre_final.ckpt from the first epoch",
}
PRETRAINED_METHODS = ("predictor-dele", "predictor-dele-start")


def parse_seeds(text):
    """Parse ``0-19`` or ``0,3,5`` into a list of ints."""
    seeds = []
    for part in text.split(","):
        if "-" in part:
            first, last = part.split("-")
            seeds += range(int(first), int(last) + 1)
        else:
            seeds.append(int(part))
    return seeds


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-19", help="seeds as 0-19 or 0,3,5 (default 0-19)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--pretrained-predictor", default=None, metavar="PATH",
                        help="DELE step-1 pre_final.ckpt for the predictor-dele methods (skipped without it)")
    parser.add_argument("--table", default=str(DEFAULT_TABLE),
                        help="NASWOT NAS-Bench-201 CSV (default: $DELE_DATA_DIR/nb201/naswot_nb201_cifar10.csv)")
    parser.add_argument("--runs-dir", default=str(REPO_ROOT / "benchmarks" / "runs" / "search_comparison"),
                        help="folder of the per-run train dirs")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results" / "search.md"),
                        help="markdown file the table is written to")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--gpu", type=int, default=None, help="CUDA device for the predictors")
    return parser


def method_config(base, method, pretrained):
    """Return a copy of the shipped config with the controller of ``method``."""
    cfg = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    predictor_cfg = cfg["controller_cfg"]
    if method == "random":
        cfg["controller_type"], cfg["controller_cfg"] = "random", {}
    elif method == "evolution":
        cfg["controller_type"] = "evo"
        cfg["controller_cfg"] = {"mode": "eval", **predictor_cfg["inner_controller_cfg"]}
    elif method == "predictor-scratch":
        predictor_cfg["pretrained_predictor_path"] = None
        predictor_cfg["use_pretrained_from_start"] = False
    else:
        predictor_cfg["pretrained_predictor_path"] = str(Path(pretrained).resolve())
        predictor_cfg["use_pretrained_from_start"] = method == "predictor-dele-start"
    return cfg


def run_one(cfg, train_dir, seed, gpu):
    """Run one search unless its summary exists; return the summary and whether it existed."""
    summary_path = train_dir / SUMMARY_NAME
    if summary_path.is_file():
        return json.loads(summary_path.read_text()), True
    if train_dir.exists():
        # An interrupted run: benchmark runs write no checkpoints, so it starts again.
        shutil.rmtree(train_dir)
    return run_search(cfg, train_dir, seed=seed, gpu=gpu, progress=False), False


def method_row(method, summaries, best_key):
    """Format one markdown row: test accuracy statistics, global-best hits and wall time."""
    space = NasBench201SearchSpace()
    tests = [100 * summary["best_test_acc"] for summary in summaries]
    hits = [summary for summary in summaries if Rollout.from_genotype(space, summary["best_genotype"]).key == best_key]
    queries = f"{statistics.fmean(s['best_query'] for s in hits):.1f}" if hits else "-"
    wall = statistics.fmean(summary["wall_time_s"] for summary in summaries)
    return (f"| {METHODS[method]} | {len(summaries)} | {statistics.fmean(tests):.2f} | "
            f"{statistics.median(tests):.2f} | {len(hits)}/{len(summaries)} | {queries} | {wall:.1f} |")


def write_report(path, rows, command, table, best, threads):
    best_key, best_valid, best_test = best
    lines = [
        "# Search comparison on NAS-Bench-201 CIFAR-10",
        "",
        "Budget: 50 queries (10 epochs x 5) per search, from `cfgs/nasbench-201_gates_search.yaml`.",
        f"Table: `{Path(table).name}` (reward = validation accuracy of the `cifar10-valid` split; "
        "the test accuracy of the returned architecture is reported).",
        f"Global best by validation: `{matrix_to_string(matrix_from_edges(best_key))}`, "
        f"{100 * best_valid:.2f} validation, {100 * best_test:.2f} test accuracy.",
        "",
        "| method | runs | mean test acc (%) | median test acc (%) | found the global best | "
        "mean queries until found | wall time of one search (s) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `{command}`",
        "",
        f"Hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} with {threads} thread(s); wall times are per search, on a shared machine.",
        "",
    ]
    text = "\n".join(lines)
    with atomic_write(path, "w") as stream:
        stream.write(text)
    return text


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Per-run search.log files keep warnings and errors only; the results are in the CSVs.
    os.environ.setdefault("AWNAS_LOG_LEVEL", "WARNING")
    torch.set_num_threads(args.threads)
    methods = [method.strip() for method in args.methods.split(",") if method.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; choose from {list(METHODS)}")
    if args.pretrained_predictor is None:
        skipped = [method for method in methods if method in PRETRAINED_METHODS]
        if skipped:
            print(f"no --pretrained-predictor: skipping {', '.join(skipped)}", file=sys.stderr)
        methods = [method for method in methods if method not in PRETRAINED_METHODS]
    elif not Path(args.pretrained_predictor).is_file():
        raise SystemExit(f"error: --pretrained-predictor {args.pretrained_predictor} not found")
    if not Path(args.table).is_file():
        raise SystemExit(f"error: --table {args.table} not found (set DELE_DATA_DIR or pass --table)")

    base = resolve_search_config(SHIPPED_CONFIG, table=args.table, pretrained_predictor="none")
    best = BenchmarkTable.load(args.table).best()
    seeds = parse_seeds(args.seeds)
    runs_dir = Path(args.runs_dir)

    rows = []
    for method in methods:
        cfg = method_config(base, method, args.pretrained_predictor)
        summaries = []
        for seed in seeds:
            started = time.perf_counter()
            summary, cached = run_one(cfg, runs_dir / method / f"seed{seed}", seed, args.gpu)
            summaries.append(summary)
            status = "cached" if cached else f"{time.perf_counter() - started:.1f} s"
            print(f"{method} seed {seed}: test {100 * summary['best_test_acc']:.2f}, "
                  f"best at query {summary['best_query']} ({status})", flush=True)
        rows.append(method_row(method, summaries, best[0]))

    command = "python benchmarks/search_comparison.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(write_report(Path(args.output), rows, command, args.table, best, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
