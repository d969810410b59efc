"""The search-space interface shared by every architecture family."""

import numpy as np

from dele.registry import Component, get_class


class SearchSpace(Component):
    """Architecture format, validation, sampling, mutation and tensor encoding.

    Subclasses define ``NAME`` and implement every method below. Architectures are plain
    Python or numpy values in the space's documented format; :meth:`encode` turns a list
    of them into the tensor that the space's embedders read.
    """

    REGISTRY = "search_space"

    def validate(self, arch):
        """Return ``arch`` in canonical form, or raise ValueError naming what is wrong."""
        raise NotImplementedError

    def canonical_key(self, arch):
        """Return a hashable key that is equal for equal architectures."""
        raise NotImplementedError

    def random_sample(self, rng):
        """Draw one architecture with a ``numpy.random.Generator``."""
        raise NotImplementedError

    def mutate(self, arch, rng):
        """Return a copy of ``arch`` with one decision changed."""
        raise NotImplementedError

    def genotype(self, arch):
        """Return the human-readable string of ``arch``."""
        raise NotImplementedError

    def from_genotype(self, text):
        """Parse the string written by :meth:`genotype`."""
        raise NotImplementedError

    def encode(self, archs):
        """Encode a sequence of architectures as one tensor for the embedders."""
        raise NotImplementedError

    def to_json(self, arch):
        """Return a JSON-serialisable form of ``arch``, read back by :meth:`validate`."""
        return np.asarray(self.validate(arch)).tolist()

    def to_pickle(self, arch):
        """Return ``arch`` in the layout of the original DELE pickles."""
        return self.validate(arch)


def get_search_space(name, **cfg):
    """Build the search space registered as ``name``."""
    return get_class("search_space", name)(**cfg)
