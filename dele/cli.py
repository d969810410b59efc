"""The ``dele`` command: ``train``, ``train-ensemble``, ``search`` and ``data convert``."""

import argparse
import logging
import os
import sys

from dele.config import ConfigError
from dele.data import DataError
from dele.registry import RegistryError

logger = logging.getLogger(__name__)

USAGE = """dele COMMAND [ARGS]

commands:
  train           train_predictor.py: vanilla, or pretrain on one low-fidelity type and finetune
  train-ensemble  dynamic_ensemble_train_predictor.py: DELE, the dynamic ensemble of experts
  search          predictor-based evolutionary search from a search YAML
  data convert    convert public benchmark files to training and validation records
"""


def _data_main(argv):
    from dele import convert

    parser = argparse.ArgumentParser(prog="dele data")
    commands = parser.add_subparsers(dest="data_command", required=True)
    convert.add_arguments(commands.add_parser("convert", help="convert public benchmark files to records"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    return convert.run(args)


def _search_main(argv):
    from dele.search.cli import main as search_main

    return search_main(argv)


def _commands():
    from dele.scripts import dynamic_ensemble_main, train_predictor_main

    return {
        "train": train_predictor_main,
        "train-ensemble": dynamic_ensemble_main,
        "search": _search_main,
        "data": _data_main,
    }


def run_command(function, argv):
    """Run an entry point; report user errors in one line and exit with status 2.

    Set ``DELE_TRACEBACK=1`` to see the traceback of such an error.
    """
    try:
        function(argv)
    except KeyboardInterrupt:
        print("interrupted; a training run or search continues from its last resume.ckpt with --resume",
              file=sys.stderr)
        return 130
    except (ConfigError, DataError, RegistryError, ValueError, OSError) as error:
        if os.environ.get("DELE_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr)
        for handler in logging.getLogger().handlers:  # keep the error in train.log / search.log
            if isinstance(handler, logging.FileHandler):
                handler.handle(logging.makeLogRecord({"name": __name__, "levelno": logging.ERROR,
                                                      "levelname": "ERROR", "msg": str(error)}))
        return 2
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    commands = _commands()
    if argv[0] not in commands:
        print(f"error: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return run_command(commands[argv[0]], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
