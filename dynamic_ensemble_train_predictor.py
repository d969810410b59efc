"""Train a DELE predictor: one expert per low-fidelity type, then the gated ensemble on
actual accuracies. The same as ``dele train-ensemble``."""

import sys

from dele.cli import run_command
from dele.scripts import dynamic_ensemble_main

if __name__ == "__main__":
    sys.exit(run_command(dynamic_ensemble_main, sys.argv[1:]))
