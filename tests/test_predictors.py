"""Predictors: every registered network, the batched experts of the dynamic ensemble,
its gate, and which parameters each training step updates."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dele.predictors  # noqa: F401 - registers the built-in predictors
from dele.losses import margin_loss
from dele.pairs import build_pairs
from dele.predictors import (
    DynamicEnsemblePointwiseComparator,
    PointwiseComparator,
    ScoringNetwork,
    build_arch_network,
)
from dele.registry import list_names
from dele.spaces.nb201 import NasBench201SearchSpace
from dele.training import PairSettings, batch_loss

EMBEDDER_CFGS = {
    "nb201-flow": {
        "op_embedding_dim": 8,
        "node_embedding_dim": 8,
        "hid_dim": 12,
        "gcn_out_dims": [16, 16],
        "gcn_kwargs": {"residual_only": 1},
        "use_final_only": True,
    },
    "nb201-lstm": {"num_hid": 16, "emb_hid": 8, "use_hid": True},
}
NETWORK_CFGS = {
    "pointwise_comparator": {},
    "dynamic_ensemble_pointwise_comparator": {"auxiliary_head_num": 3},
}
EMBEDDERS = sorted(EMBEDDER_CFGS)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run the module's tiny models on one thread: intra-op threads only add
    synchronisation, which costs much more when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def space():
    return NasBench201SearchSpace()


@pytest.fixture(scope="module")
def archs(space):
    rng = np.random.default_rng(0)
    return space.encode([space.random_sample(rng) for _ in range(12)])


def _network_cfg(embedder, **overrides):
    cfg = {
        "arch_embedder_type": embedder,
        "arch_embedder_cfg": EMBEDDER_CFGS[embedder],
        "mlp_hiddens": [16],
        "mlp_dropout": 0.1,
        "compare_margin": 0.1,
    }
    cfg.update(overrides)
    return cfg


def _ensemble(space, embedder, experts=3, seed=0, **overrides):
    torch.manual_seed(seed)
    return DynamicEnsemblePointwiseComparator(
        space, **_network_cfg(embedder, auxiliary_head_num=experts, **overrides)
    )


def _member(space, embedder, **overrides):
    cfg = _network_cfg(embedder, **overrides)
    return ScoringNetwork(space, embedder, cfg["arch_embedder_cfg"], cfg["mlp_hiddens"], cfg["mlp_dropout"])


# ---------------------------------------------------------------------------
# Every registered predictor


@pytest.mark.parametrize("embedder", EMBEDDERS)
@pytest.mark.parametrize("name", list_names("arch_network"))
def test_registered_network_runs(space, archs, name, embedder):
    if name not in NETWORK_CFGS:
        pytest.fail(f"add a tiny config for the arch_network {name!r} to NETWORK_CFGS")
    torch.manual_seed(0)
    model = build_arch_network(name, space, {**_network_cfg(embedder), **NETWORK_CFGS[name]})

    scores = model.score(archs)
    scores.square().mean().backward()

    assert scores.shape == (12,)
    assert torch.isfinite(scores).all()
    assert model.predict(archs).shape == (12,)
    assert ((model.predict(archs) > 0) & (model.predict(archs) < 1)).all()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name


def test_unknown_network_option_raises(space):
    with pytest.raises(ValueError, match="pointwise_comparator") as caught:
        build_arch_network("pointwise_comparator", space, {**_network_cfg("nb201-flow"), "mlp_hidden": [3]})
    assert "mlp_hidden" in str(caught.value)


def test_bad_loss_type_raises(space):
    with pytest.raises(ValueError, match="'hinge'"):
        PointwiseComparator(space, **_network_cfg("nb201-flow", compare_loss_type="hinge"))


@pytest.mark.parametrize("heads", [0, -1, 2.0, None])
def test_bad_expert_count_raises(space, heads):
    with pytest.raises(ValueError, match="auxiliary_head_num"):
        DynamicEnsemblePointwiseComparator(space, **_network_cfg("nb201-flow", auxiliary_head_num=heads))


def test_ensemble_rejects_batch_norm(space):
    cfg = _network_cfg("nb201-flow", auxiliary_head_num=2)
    cfg["arch_embedder_cfg"] = {**cfg["arch_embedder_cfg"], "use_bn": True}
    with pytest.raises(ValueError, match="use_bn"):
        DynamicEnsemblePointwiseComparator(space, **cfg)


# ---------------------------------------------------------------------------
# Experts


@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_single_expert_equals_comparator(space, archs, embedder):
    torch.manual_seed(1)
    comparator = PointwiseComparator(space, **_network_cfg(embedder)).eval()
    ensemble = _ensemble(space, embedder, experts=1, use_uniform_confidence=True).eval()

    ensemble.experts.load_member_state_dict(0, comparator.state_dict())

    torch.testing.assert_close(ensemble.score(archs), comparator.score(archs))
    torch.testing.assert_close(ensemble.predict(archs), comparator.predict(archs))


@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_member_state_matches_single_network(space, embedder):
    ensemble = _ensemble(space, embedder)
    member = _member(space, embedder)

    state = ensemble.experts.member_state_dict(1)

    assert set(state) == set(member.state_dict())
    member.load_state_dict(state)


def test_ensemble_state_round_trip(space, archs):
    ensemble = _ensemble(space, "nb201-lstm", seed=4).eval()
    fresh = _ensemble(space, "nb201-lstm", seed=5).eval()

    state = ensemble.state_dict()
    fresh.load_state_dict(state)

    # The LSTM embedder's edge index tables are non-persistent buffers, in the ensemble too.
    assert not [name for name in state if "edge_rows" in name or "edge_cols" in name]
    torch.testing.assert_close(fresh.score(archs), ensemble.score(archs))


@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_expert_scores_equal_members(space, archs, embedder):
    ensemble = _ensemble(space, embedder).eval()

    scores = ensemble.expert_scores(archs)

    assert scores.shape == (3, 12)
    for k in range(3):
        member = _member(space, embedder).eval()
        member.load_state_dict(ensemble.experts.member_state_dict(k))
        torch.testing.assert_close(scores[k], member(archs).squeeze(-1), rtol=1e-5, atol=1e-6)


def test_load_member_state_round_trip(space, archs):
    ensemble = _ensemble(space, "nb201-flow").eval()
    member = _member(space, "nb201-flow").eval()

    ensemble.experts.load_member_state_dict(2, member.state_dict())

    torch.testing.assert_close(ensemble.expert_scores(archs)[2], member(archs).squeeze(-1), rtol=1e-5, atol=1e-6)
    for name, value in member.state_dict().items():
        assert torch.equal(ensemble.experts.member_state_dict(2)[name], value), name


def test_load_member_state_wrong_keys_raises(space):
    ensemble = _ensemble(space, "nb201-flow")
    state = _member(space, "nb201-flow").state_dict()
    state["extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match="extra"):
        ensemble.experts.load_member_state_dict(0, state)


def test_experts_initialised_differently(space):
    ensemble = _ensemble(space, "nb201-flow")
    first = ensemble.experts.member_state_dict(0)
    second = ensemble.experts.member_state_dict(1)
    for name in first:
        if first[name].is_floating_point() and first[name].numel() > 1:
            assert not torch.equal(first[name], second[name]), name


def test_experts_independent_dropout(space, archs):
    ensemble = _ensemble(space, "nb201-flow", experts=2, mlp_dropout=0.5)
    ensemble.experts.load_member_state_dict(1, ensemble.experts.member_state_dict(0))

    ensemble.eval()
    evaluated = ensemble.expert_scores(archs)
    ensemble.train()
    trained = ensemble.expert_scores(archs)

    torch.testing.assert_close(evaluated[1], evaluated[0])
    assert not torch.allclose(trained[1], trained[0])


# ---------------------------------------------------------------------------
# Gate


@pytest.mark.parametrize("uniform", [False, True])
def test_gate_weights_sum_to_one(space, archs, uniform):
    ensemble = _ensemble(space, "nb201-flow", use_uniform_confidence=uniform)

    weights = ensemble.gate_weights(archs)

    assert weights.shape == (12, 3)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(12))


def test_uniform_confidence_starts_equal(space, archs):
    weights = _ensemble(space, "nb201-flow", use_uniform_confidence=True).gate_weights(archs)
    torch.testing.assert_close(weights, torch.full((12, 3), 1 / 3))


def test_score_is_weighted_sum(space, archs):
    ensemble = _ensemble(space, "nb201-lstm").eval()

    expected = (ensemble.gate_weights(archs) * ensemble.expert_scores(archs).T).sum(dim=1)

    torch.testing.assert_close(ensemble.score(archs), expected)
    ensemble_scores, expert_scores = ensemble.mtl_predict(archs)
    torch.testing.assert_close(ensemble_scores, torch.sigmoid(expected))
    torch.testing.assert_close(expert_scores, torch.sigmoid(ensemble.expert_scores(archs)))


@pytest.mark.parametrize("uniform", [False, True])
def test_gate_parameters_exclude_experts(space, uniform):
    ensemble = _ensemble(space, "nb201-flow", use_uniform_confidence=uniform)
    gate = {id(p) for p in ensemble.gate_parameters()}
    experts = {id(p) for p in ensemble.experts.parameters()}

    assert gate
    assert not gate & experts
    assert gate | experts == {id(p) for p in ensemble.parameters()}


# ---------------------------------------------------------------------------
# Training steps


def _snapshot(parameters):
    return [p.detach().clone() for p in parameters]


@pytest.mark.parametrize("uniform", [False, True])
def test_step_one_updates_experts_only(space, archs, uniform):
    ensemble = _ensemble(space, "nb201-flow", use_uniform_confidence=uniform)
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=0.01)
    targets = torch.rand(12, 3, generator=torch.Generator().manual_seed(0))
    gate_before = _snapshot(ensemble.gate_parameters())
    experts_before = _snapshot(ensemble.experts.parameters())

    loss, pairs = batch_loss(ensemble, archs, targets, PairSettings(), torch.Generator().manual_seed(1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

    assert pairs > 0
    for before, after in zip(gate_before, ensemble.gate_parameters()):
        assert torch.equal(before, after)
    for before, after in zip(experts_before, ensemble.experts.parameters()):
        assert not torch.equal(before, after)


def test_step_one_uses_own_column(space, archs):
    ensemble = _ensemble(space, "nb201-flow", experts=2)
    targets = torch.stack([torch.linspace(0, 1, 12), torch.zeros(12)], dim=1)

    loss, _ = batch_loss(ensemble, archs, targets, PairSettings(), torch.Generator().manual_seed(1))
    loss.backward()

    # The second column is constant, so it yields no pairs and expert 1 gets no gradient.
    for name, parameter in ensemble.experts.params.items():
        assert parameter.grad[0].abs().sum() > 0, name
        assert parameter.grad[1].abs().sum() == 0, name


@pytest.mark.parametrize("embedder", EMBEDDERS)
@pytest.mark.parametrize("uniform", [False, True])
def test_step_two_uses_every_parameter(space, archs, embedder, uniform):
    ensemble = _ensemble(space, embedder, use_uniform_confidence=uniform)
    targets = torch.linspace(0, 1, 12)

    loss, _ = batch_loss(ensemble, archs, targets, PairSettings(), torch.Generator().manual_seed(1))
    loss.backward()

    for name, parameter in ensemble.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_regression_batch_loss(space, archs):
    ensemble = _ensemble(space, "nb201-flow").eval()
    targets = torch.linspace(0, 1, 12)

    loss, count = batch_loss(ensemble, archs, targets, PairSettings(compare=False), None)

    assert count == 12
    torch.testing.assert_close(loss, F.mse_loss(torch.sigmoid(ensemble.score(archs)), targets))


def test_ensemble_honours_loss_type(space, archs):
    bce = _ensemble(space, "nb201-flow", seed=3, compare_loss_type="binary_cross_entropy").eval()
    margin = _ensemble(space, "nb201-flow", seed=3, compare_loss_type="margin_linear").eval()
    margin.load_state_dict(bce.state_dict())
    targets = torch.linspace(0, 1, 12)
    first, second, better = build_pairs(targets, max_compare_ratio=100.0)
    scores = bce.score(archs)
    torch.testing.assert_close(margin.score(archs), scores)

    bce_loss, _ = batch_loss(bce, archs, targets, PairSettings(max_compare_ratio=100.0), None)
    margin_value, _ = batch_loss(margin, archs, targets, PairSettings(max_compare_ratio=100.0), None)

    expected_bce = F.binary_cross_entropy_with_logits(scores[second] - scores[first], better)
    expected_margin = margin_loss(scores[first], scores[second], better, 0.1)
    torch.testing.assert_close(bce_loss, expected_bce)
    torch.testing.assert_close(margin_value, expected_margin)
    assert not torch.isclose(bce_loss, margin_value)
