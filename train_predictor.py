"""Train a predictor: vanilla (``--no-pretrain``) or pretrain on one low-fidelity type and
finetune on actual accuracies. The same as ``dele train``."""

import sys

from dele.cli import run_command
from dele.scripts import train_predictor_main

if __name__ == "__main__":
    sys.exit(run_command(train_predictor_main, sys.argv[1:]))
