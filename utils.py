"""The original DELE ``utils`` import names, re-exported from the ``dele`` package.

``compare_data`` builds comparison pairs, ``test_xk`` computes precision and Kendall's tau
at top-K, ``valid`` scores a validation dataset; see the modules named below for details.
"""

from dele.config import build_optimizer as init_optimizer
from dele.config import build_scheduler as init_scheduler
from dele.metrics import kendall_tau
from dele.metrics import topk_metrics as test_xk
from dele.pairs import build_pairs as compare_data
from dele.training import AverageMeter, train_epoch
from dele.training import evaluate as valid

__all__ = [
    "AverageMeter",
    "compare_data",
    "init_optimizer",
    "init_scheduler",
    "kendall_tau",
    "test_xk",
    "train_epoch",
    "valid",
]
