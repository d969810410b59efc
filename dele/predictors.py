"""Architecture-performance predictors: the pointwise comparator and the dynamic ensemble.

Both score architectures with an embedder followed by an MLP head and are trained with
pairwise ranking losses (:mod:`dele.losses`). The optimiser is built outside the model
(:func:`dele.training.build_optimizer`); ``optimizer`` and ``scheduler`` config keys are
read there.
"""

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dele.embedders import build_embedder
from dele.losses import PAIR_LOSS_TYPES, pair_loss, regression_loss
from dele.registry import Component, get_class


def build_mlp(in_dim, hiddens, dropout, out_dim):
    """``[Linear, ReLU, Dropout]`` per hidden size, then ``Linear(-> out_dim)``."""
    layers = []
    for hidden in hiddens:
        layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = hidden
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ScoringNetwork(nn.Module):
    """An embedder and an MLP head: ``(B, ...)`` encoded archs to ``(B, out_dim)`` scores."""

    def __init__(self, search_space, embedder_type, embedder_cfg, mlp_hiddens, mlp_dropout, out_dim=1):
        super().__init__()
        self.arch_embedder = build_embedder(embedder_type, search_space, embedder_cfg)
        self.mlp = build_mlp(self.arch_embedder.out_dim, mlp_hiddens, mlp_dropout, out_dim)

    def forward(self, encoded):
        return self.mlp(self.arch_embedder(encoded))


class ExpertStack(nn.Module):
    """K independently initialised copies of one network, run as a single batched call.

    The members' parameters are stacked along a leading K axis
    (``torch.func.stack_module_state``) and the forward pass is ``vmap`` over that axis,
    with independent dropout masks per member (``randomness="different"``). Parameter
    names are the member's names with ``.`` replaced by ``-``. A member's non-persistent
    buffers (such as index tables) are stacked for the forward pass but, as in the member
    itself, left out of every state dict.
    """

    def __init__(self, build_member, count):
        super().__init__()
        members = [build_member() for _ in range(count)]
        params, buffers = stack_module_state(members)
        persistent = set(members[0].state_dict())
        # The template has no data (meta device); a list keeps it out of the module tree.
        self._template = [copy.deepcopy(members[0]).to("meta")]
        self.count = count
        self.params = nn.ParameterDict({name.replace(".", "-"): nn.Parameter(p) for name, p in params.items()})
        for name, buffer in buffers.items():
            self.register_buffer("buffer-" + name.replace(".", "-"), buffer, persistent=name in persistent)
        self._buffer_names = list(buffers)
        self._state_buffer_names = [name for name in buffers if name in persistent]

    def _stacked_state(self):
        params = {name.replace("-", "."): value for name, value in self.params.items()}
        buffers = {name: getattr(self, "buffer-" + name.replace(".", "-")) for name in self._buffer_names}
        return params, buffers

    def forward(self, encoded):
        """Return the ``(K, B, ...)`` outputs of all members on the same input."""
        template = self._template[0].train(self.training)
        params, buffers = self._stacked_state()

        def run_member(member_params, member_buffers, inputs):
            return functional_call(template, (member_params, member_buffers), (inputs,))

        return vmap(run_member, in_dims=(0, 0, None), randomness="different")(params, buffers, encoded)

    def _member_state_tensors(self):
        """Return the stacked tensors behind a member's ``state_dict``, keyed by the member's names."""
        params, buffers = self._stacked_state()
        return {**params, **{name: buffers[name] for name in self._state_buffer_names}}

    def member_state_dict(self, index):
        """Return member ``index``'s state as a regular ``state_dict`` of one network."""
        return {name: value[index].detach().clone() for name, value in self._member_state_tensors().items()}

    @torch.no_grad()
    def load_member_state_dict(self, index, state):
        """Copy a single network's ``state_dict`` into member ``index``."""
        tensors = self._member_state_tensors()
        expected = set(tensors)
        if set(state) != expected:
            raise ValueError(f"member state keys differ: missing {sorted(expected - set(state))}, "
                             f"unexpected {sorted(set(state) - expected)}")
        for name, value in tensors.items():
            value[index].copy_(state[name])


class ArchNetwork(nn.Module, Component):
    """Base of predictors: the loss settings and the scoring interface."""

    REGISTRY = "arch_network"

    def __init__(
        self,
        search_space,
        *,
        compare_loss_type="margin_linear",
        compare_margin=0.01,
        margin_l2=False,
        tanh_score=None,
        max_grad_norm=None,
    ):
        super().__init__()
        if compare_loss_type not in PAIR_LOSS_TYPES:
            raise ValueError(f"compare_loss_type must be one of {list(PAIR_LOSS_TYPES)}, got {compare_loss_type!r}")
        self.search_space = search_space
        self.compare_loss_type = compare_loss_type
        self.compare_margin = compare_margin
        self.margin_l2 = margin_l2
        self.tanh_score = tanh_score
        self.max_grad_norm = max_grad_norm

    def score(self, encoded):
        """Return raw ``(B,)`` scores of encoded architectures."""
        raise NotImplementedError

    def predict(self, encoded, sigmoid=True, tanh=False):
        """Return ``sigmoid`` (default), ``tanh`` or raw scores, shape ``(B,)``."""
        scores = self.score(encoded)
        if sigmoid:
            return torch.sigmoid(scores)
        if tanh:
            return torch.tanh(scores)
        return scores

    def compare_loss(self, scores, first, second, better):
        """Pair loss of ``compare_loss_type`` on ``(B,)`` scores and index pairs."""
        return pair_loss(
            scores[first], scores[second], better, self.compare_loss_type, self.compare_margin, self.margin_l2
        )

    def regression_loss(self, scores, labels):
        """MSE between ``sigmoid(scores)`` and labels in [0, 1]."""
        return regression_loss(scores, labels)


class PointwiseComparator(ArchNetwork):
    """One embedder and an MLP that scores each architecture (aw_nas ``pointwise_comparator``)."""

    NAME = "pointwise_comparator"

    def __init__(
        self,
        search_space,
        *,
        arch_embedder_type,
        arch_embedder_cfg=None,
        mlp_hiddens=(200, 200, 200),
        mlp_dropout=0.1,
        **loss_options,
    ):
        super().__init__(search_space, **loss_options)
        network = ScoringNetwork(search_space, arch_embedder_type, arch_embedder_cfg, mlp_hiddens, mlp_dropout)
        self.arch_embedder = network.arch_embedder
        self.mlp = network.mlp

    def score(self, encoded):
        return self.mlp(self.arch_embedder(encoded)).squeeze(-1)


class DynamicEnsemblePointwiseComparator(ArchNetwork):
    """K low-fidelity experts mixed per architecture by a gating network (DELE).

    Expert k is an embedder plus an MLP head; all K run as one batched call
    (:class:`ExpertStack`). The gate is a separate embedder plus an MLP with K outputs,
    softmax over experts, or with ``use_uniform_confidence`` one learned ``(1, K)``
    vector initialised to ``1/K``. The ensemble score is ``sum_k w_k(x) s_k(x)``.
    """

    NAME = "dynamic_ensemble_pointwise_comparator"

    def __init__(
        self,
        search_space,
        *,
        auxiliary_head_num,
        arch_embedder_type,
        arch_embedder_cfg=None,
        mlp_hiddens=(200, 200, 200),
        mlp_dropout=0.1,
        use_uniform_confidence=False,
        **loss_options,
    ):
        super().__init__(search_space, **loss_options)
        if not isinstance(auxiliary_head_num, int) or auxiliary_head_num < 1:
            raise ValueError(f"auxiliary_head_num must be a positive integer, got {auxiliary_head_num!r}")
        if (arch_embedder_cfg or {}).get("use_bn"):
            raise ValueError("use_bn is not supported in the ensemble: batched experts cannot update BN statistics")
        self.num_experts = auxiliary_head_num
        self.use_uniform_confidence = use_uniform_confidence

        def build_expert():
            return ScoringNetwork(search_space, arch_embedder_type, arch_embedder_cfg, mlp_hiddens, mlp_dropout)

        self.experts = ExpertStack(build_expert, auxiliary_head_num)
        if use_uniform_confidence:
            self.confidence = nn.Parameter(torch.full((1, auxiliary_head_num), 1.0 / auxiliary_head_num))
        else:
            gate = ScoringNetwork(
                search_space, arch_embedder_type, arch_embedder_cfg, mlp_hiddens, mlp_dropout, auxiliary_head_num
            )
            self.arch_embedder = gate.arch_embedder
            self.confidence_mlp = gate.mlp

    def expert_scores(self, encoded):
        """Return raw ``(K, B)`` scores of every expert."""
        return self.experts(encoded).squeeze(-1)

    def gate_weights(self, encoded):
        """Return ``(B, K)`` expert weights; each row sums to one."""
        if self.use_uniform_confidence:
            return torch.softmax(self.confidence, dim=-1).expand(encoded.shape[0], -1)
        return torch.softmax(self.confidence_mlp(self.arch_embedder(encoded)), dim=-1)

    def score(self, encoded):
        return (self.gate_weights(encoded) * self.expert_scores(encoded).T).sum(dim=-1)

    def mtl_predict(self, encoded):
        """Return the ensemble's sigmoid scores ``(B,)`` and each expert's ``(K, B)``."""
        experts = self.expert_scores(encoded)
        ensemble = (self.gate_weights(encoded) * experts.T).sum(dim=-1)
        return torch.sigmoid(ensemble), torch.sigmoid(experts)

    def gate_parameters(self):
        """Parameters of the gating network only."""
        if self.use_uniform_confidence:
            return [self.confidence]
        return list(self.arch_embedder.parameters()) + list(self.confidence_mlp.parameters())


def build_arch_network(name, search_space, cfg):
    """Build the predictor registered as ``name`` from its ``arch_network_cfg`` (no optimiser keys)."""
    cls = get_class("arch_network", name)
    try:
        return cls(search_space, **cfg)
    except TypeError as error:
        raise ValueError(f"invalid arch_network_cfg for {name!r}: {error}") from None
