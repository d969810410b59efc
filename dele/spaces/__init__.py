"""Search spaces. Importing this package registers the built-in spaces."""

from dele.spaces.base import SearchSpace, get_search_space
from dele.spaces.nb201 import NasBench201SearchSpace
from dele.spaces.nb301 import NasBench301SearchSpace
from dele.spaces.nds import NDSSearchSpace

__all__ = ["SearchSpace", "get_search_space", "NasBench201SearchSpace", "NasBench301SearchSpace", "NDSSearchSpace"]
