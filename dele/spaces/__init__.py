"""Search spaces. Importing this package registers the built-in spaces."""

from dele.spaces.base import SearchSpace, get_search_space
from dele.spaces.nb201 import NasBench201SearchSpace

__all__ = ["SearchSpace", "get_search_space", "NasBench201SearchSpace"]
