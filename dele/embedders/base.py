"""The architecture-embedder interface."""

from torch import nn

from dele.registry import Component, get_class


class ArchEmbedder(nn.Module, Component):
    """Maps a batch of encoded architectures to ``(B, out_dim)`` embeddings.

    Subclasses take ``(search_space, **cfg)`` and set ``out_dim``. :meth:`prepare` turns a
    list of architectures into the tensor that :meth:`forward` reads; it runs once per
    dataset, never per step. The ensemble runs several embedders as one call with
    ``torch.func.vmap`` over their stacked parameters, with the input shared. So ``forward``
    must not read parameter values on the host (no numpy, no ``.item()``), but it may
    inspect the input. ``nb201-flow`` checks it and calls ``torch.unique`` on it, so vmap
    over the input batch is not supported by every embedder.
    """

    REGISTRY = "arch_embedder"
    out_dim: int

    def __init__(self, search_space=None):
        super().__init__()
        self.search_space = search_space

    def prepare(self, archs):
        """Encode architectures as the tensor :meth:`forward` reads."""
        return self.search_space.encode(archs)


def build_embedder(name, search_space, cfg=None):
    """Build the embedder registered as ``name`` with keyword options ``cfg``."""
    cls = get_class("arch_embedder", name)
    try:
        return cls(search_space, **(cfg or {}))
    except TypeError as error:
        raise ValueError(f"invalid arch_embedder_cfg for {name!r}: {error}") from None
