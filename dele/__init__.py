"""dele: Dynamic Ensemble of Low-fidelity Experts for architecture-performance prediction."""

__version__ = "0.1.0"
