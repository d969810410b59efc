"""Architecture search on benchmark tables: the ``nasbench-201`` evaluator, the ``evo``,
``random`` and ``predictor-based`` controllers and the ``simple`` trainer.

Importing this package registers those components.
"""

from dele.search.base import Rollout, SearchController
from dele.search.controller import PredictorBasedController, RandomController
from dele.search.evaluator import BenchmarkTable, NasBench201Evaluator
from dele.search.evolution import EvolutionController
from dele.search.loop import SimpleTrainer

__all__ = [
    "BenchmarkTable",
    "EvolutionController",
    "NasBench201Evaluator",
    "PredictorBasedController",
    "RandomController",
    "Rollout",
    "SearchController",
    "SimpleTrainer",
]
