"""Training and evaluation loops and checkpoints, shared by both training scripts."""

import logging
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from dele.fileio import atomic_write
from dele.metrics import format_topk, kendall_tau, topk_metrics
from dele.pairs import build_pairs

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "dele-checkpoint"
CHECKPOINT_VERSION = 1


class AverageMeter:
    """Running weighted mean: ``update(value, n)`` adds ``value`` with weight ``n``."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sum, self.cnt, self.avg = 0.0, 0, 0.0

    def update(self, value, n=1):
        self.sum += value * n
        self.cnt += n
        self.avg = self.sum / self.cnt if self.cnt else 0.0

    def is_empty(self):
        return self.cnt == 0


@dataclass
class PairSettings:
    """Settings that turn a batch into a loss: ranking pairs (``compare``) or MSE regression."""

    compare: bool = True
    threshold: float = 0.0
    max_compare_ratio: float = 4.0
    criterion: str = "random"
    compare_split: bool = False

    @classmethod
    def from_config(cls, cfg):
        return cls(
            compare=bool(cfg["compare"]),
            threshold=float(cfg["compare_threshold"]),
            max_compare_ratio=float(cfg["max_compare_ratio"]),
            criterion=cfg["choose_pair_criterion"],
            compare_split=bool(cfg["compare_split"]),
        )


def batch_indices(count, batch_size, generator, shuffle=True):
    """Split ``range(count)`` into index tensors of at most ``batch_size`` items."""
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    return list(torch.split(order, batch_size))


def _ranking_loss(model, scores, targets, settings, generator):
    """Pair loss of one score vector against one target vector; returns (loss, pair count)."""
    first, second, better = build_pairs(
        targets, settings.threshold, settings.max_compare_ratio, settings.criterion, settings.compare_split, generator
    )
    if first.numel() == 0:
        return None, 0
    return model.compare_loss(scores, first, second, better), first.numel()


def batch_loss(model, encoded, targets, settings, generator):
    """Loss of one batch and its weight (pairs, or items for MSE).

    ``targets`` is ``(B,)`` for a single score, or ``(B, K)`` to train the K experts of an
    ensemble each on its own column (step 1 of DELE).
    """
    if targets.dim() == 2:
        expert_scores = model.expert_scores(encoded)  # (K, B): every expert scores each arch once
        losses, total = [], 0
        for k in range(targets.shape[1]):
            loss, count = _ranking_loss(model, expert_scores[k], targets[:, k], settings, generator)
            if loss is not None:
                losses.append(loss)
                total += count
        return (torch.stack(losses).sum(), total) if losses else (None, 0)

    scores = model.score(encoded)
    if settings.compare:
        return _ranking_loss(model, scores, targets, settings, generator)
    return model.regression_loss(scores, targets), targets.numel()


def train_epoch(model, optimizer, dataset, targets, settings, generator, batch_size, progress=None):
    """Train one epoch over ``dataset`` against ``targets`` (``(N,)`` or ``(N, K)``); return the mean loss."""
    model.train()
    meter = AverageMeter()
    for indices in batch_indices(len(dataset), batch_size, generator):
        indices = indices.to(dataset.encoded.device)
        loss, weight = batch_loss(model, dataset.encoded[indices], targets[indices], settings, generator)
        if loss is None:
            continue

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if model.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), model.max_grad_norm)
        optimizer.step()

        meter.update(loss.item(), weight)
        if progress is not None:
            progress.set_postfix(loss=f"{meter.avg:.4f}", refresh=False)
    return meter.avg


@torch.no_grad()
def predict_dataset(model, dataset, batch_size=512):
    """Return sigmoid scores ``(N,)`` and, for an ensemble, expert scores ``(K, N)`` (else None)."""
    model.eval()
    scores, expert_scores = [], []
    for indices in batch_indices(len(dataset), batch_size, None, shuffle=False):
        encoded = dataset.encoded[indices.to(dataset.encoded.device)]
        if hasattr(model, "mtl_predict"):
            ensemble, experts = model.mtl_predict(encoded)
            expert_scores.append(experts.cpu())
        else:
            ensemble = model.predict(encoded)
        scores.append(ensemble.cpu())
    experts = torch.cat(expert_scores, dim=1).numpy() if expert_scores else None
    return torch.cat(scores).numpy(), experts


@dataclass
class Evaluation:
    """Validation metrics of one predictor on one split."""

    tau: float
    topk: list
    scores: np.ndarray
    real_acc: np.ndarray
    low_fidelity_tau: dict
    expert_scores: np.ndarray | None
    low_fidelity: dict

    def log_line(self, epoch, stage=None):
        lf = "; ".join(f"kendall tau {name} {value:.4f}" for name, value in self.low_fidelity_tau.items())
        prefix = f"{lf}; " if lf else ""
        stage = f" ({stage})" if stage else ""
        return f"Valid: Epoch {epoch}{stage}: {prefix}kendall tau real {self.tau:.4f}; patk {format_topk(self.topk)}"

    def output_dict(self):
        """Return the ``output.pkl`` content: ``real_acc``, ``score`` and, for an ensemble,
        ``low_fidelity`` and ``low_fidelity_score`` (expert sigmoid scores per type)."""
        output = {"real_acc": self.real_acc.tolist(), "score": self.scores.tolist()}
        if self.expert_scores is not None:
            output["low_fidelity"] = {name: values.tolist() for name, values in self.low_fidelity.items()}
            output["low_fidelity_score"] = {
                name: self.expert_scores[k].tolist() for k, name in enumerate(self.low_fidelity)
            }
        return output


def evaluate(model, dataset, batch_size=512):
    """Score ``dataset``; Kendall's tau and top-K against actual accuracy, and each
    low-fidelity type's tau against its expert (ensemble) or the single score."""
    scores, experts = predict_dataset(model, dataset, batch_size)
    real = dataset.accs.cpu().numpy()
    low_fidelity = {name: dataset.target(name).cpu().numpy() for name in dataset.types}

    lf_tau = {}
    for k, (name, values) in enumerate(low_fidelity.items()):
        predicted = experts[k] if experts is not None else scores
        lf_tau[name] = kendall_tau(values, predicted)
    return Evaluation(
        tau=kendall_tau(real, scores),
        topk=topk_metrics(real, scores),
        scores=scores,
        real_acc=real,
        low_fidelity_tau=lf_tau,
        expert_scores=experts,
        low_fidelity=low_fidelity,
    )


def write_output(path, evaluation):
    """Write ``output.pkl`` atomically."""
    with atomic_write(path, "wb") as stream:
        pickle.dump(evaluation.output_dict(), stream)


def rng_state(generator):
    """Capture every random state a run depends on."""
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state, generator):
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, model, meta, optimizer=None, scheduler=None, generator=None):
    """Write a checkpoint atomically: model state, ``meta`` (config, types, statistics,
    stage, epoch), and optionally optimiser, scheduler and random states for resuming."""
    content = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        **meta,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(generator) if generator is not None else None,
    }
    with atomic_write(path, "wb") as stream:
        torch.save(content, stream)


def load_checkpoint(path):
    """Read a checkpoint with ``torch.load(weights_only=True)``, which runs no code.

    A plain state dict (an aw_nas checkpoint) is returned as ``{"model": state}``.
    """
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, IndexError, OSError) as error:
        # torch's own message suggests weights_only=False, which would run code from the file.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path}: not a readable dele checkpoint or state dict ({first_line}); dele loads "
            "checkpoints with weights_only=True and never runs code stored in them"
        ) from None
    if isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT:
        return content
    if isinstance(content, dict) and all(torch.is_tensor(v) for v in content.values()):
        return {"model": content}
    raise ValueError(f"{path}: neither a dele checkpoint nor a state dict")
