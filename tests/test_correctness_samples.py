"""Issue 13, points 1 and 8: non-finite samples are invalid (DiT and GPT), one valid-novel population.

Old behaviour (measured): 5 NaN samples of 10 gave state valid_novel and sample_acc 0.9 (decode turns
NaN into 0 bits, the all-zeros image has even parity); GPT with NaN logits picks the last symbol every
time, all-ones images that are valid for even G.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from twoclocks.data import BinaryEncoding, GroupParity, OneHotEncoding, ScalarEncoding
from twoclocks.probes.samples import STATES, SampleEvaluator, classify

TRAIN = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], np.uint8)


@pytest.mark.parametrize("enc", [BinaryEncoding(), ScalarEncoding(2), OneHotEncoding(2), OneHotEncoding(2, True)],
                         ids=lambda e: f"{e.name}{'-zm' if getattr(e, 'zero_mean', False) else ''}")
def test_nonfinite_samples_are_invalid_values(enc):
    rule = GroupParity(2, 2, group=2)
    cells = np.array([[1, 1, 1, 1]] * 5 + [[0, 0, 0, 0]] * 5, np.uint8)   # 5 valid novel, 5 memorized
    x = enc.encode(cells)
    x[:3] = np.nan
    x[3, 0] = np.inf
    x[4, -1] = -np.inf
    ev = SampleEvaluator(rule, enc, TRAIN)
    ds = ev.evaluate(x, eps=(0.01, 0.5), eps_state=0.1)
    assert ds.state.values[:5].tolist() == [0] * 5 and ds.state.values[5:].tolist() == [3] * 5
    assert int(ds.nonfinite_count) == 5
    assert float(ds.sample_acc) == 0.5 and float(ds.sample_mem) == 0.5 and float(ds.group_acc) == 0.5
    np.testing.assert_array_equal(ds.invalid_frac.values, [0.5, 0.5, 0.5])   # at every eps
    assert np.isinf(ds.qdist.values[:5]).all()
    assert ds.state_count.sel(state_label="invalid_value").item() == 5
    assert ds.subset_count.values.tolist() == [5, 5, 0]      # all (finite), valid, valid_novel
    assert float(ds.group_mem) == 0.5 and np.isnan(float(ds.combinatorial_novelty))
    assert (ds.nn_hamming.values[:5] == -1).all() and (ds.nn_hamming.values[5:] == 0).all()


def test_classify_nan_q_is_invalid_value():
    assert classify(np.array([np.nan, 0.0]), np.array([True, True]), np.array([False, False]), 0.1).tolist() == [0, 2]


def test_one_valid_novel_population():
    """A valid, novel sample far from its code (q > eps_state) is state invalid_value but in the
    valid-novel population of both the nearest-neighbour subset and combinatorial novelty (old code:
    combinatorial novelty used state == valid_novel, the Hamming subset ignored q)."""
    rule, enc = GroupParity(1, 6, group=2), BinaryEncoding()
    train = np.array([[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]], np.uint8)   # group 2 only ever 00
    x = enc.encode(np.array([[1, 1, 0, 0, 0, 0],     # valid, novel, every group seen at its position
                             [0, 0, 0, 0, 1, 1]],    # valid, novel, group 2 = 11 never seen there
                            np.uint8))
    x[0] *= 0.5                                      # q = 0.5 > 0.1: state invalid_value, decodes the same
    ds = SampleEvaluator(rule, enc, train).evaluate(x, eps_state=0.1)
    assert ds.state.values.tolist() == [0, 2]
    assert ds.subset_count.sel(subset="valid_novel").item() == 2
    assert float(ds.combinatorial_novelty) == 0.5    # over both valid-novel samples (old: 0.0, state 2 only)


# ------------------------------------------------------------------------------ NaN weights, end to end
def nan_run(tmp_path, arch):
    """A 4x4 parity run (G = 2: the all-ones and all-zeros images are valid) whose step-0 weights are NaN."""
    from twoclocks.run import checkpoint_name, open_run, save_atomic
    from twoclocks.training.config import TrainConfig
    from twoclocks.training.models import build_model
    from twoclocks.training.train import create_run
    cfg = TrainConfig(arch=arch, side=4, group=2, n_train=16, n_heldout=8, n_hypercube=8, n_noise=32,
                      model="tiny", device="cpu", sampler_steps=4)
    path = tmp_path / arch
    create_run(path, cfg, set())
    run = open_run(path)
    model = build_model(cfg, run.rule, run.encoding)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    (path / "checkpoints").mkdir(exist_ok=True)
    save_atomic({"model": model.state_dict()}, path / "checkpoints" / checkpoint_name(0))
    return open_run(path)


@pytest.mark.parametrize("arch", ["dit", "gpt"])
def test_nan_weights_give_accuracy_zero_and_invalid_fraction_one(tmp_path, arch):
    run = nan_run(tmp_path, arch)
    x = run.generate(0, "cpu")
    assert x.shape[0] == 32 and not np.isfinite(x).all(axis=1).any()
    ds = SampleEvaluator(run.rule, run.encoding, run.cells("train")).evaluate(x)
    assert float(ds.sample_acc) == 0.0 and float(ds.sample_mem) == 0.0 and float(ds.group_acc) == 0.0
    np.testing.assert_array_equal(ds.invalid_frac.values, 1.0)
    assert int(ds.nonfinite_count) == 32
    assert (ds.state.values == STATES.index("invalid_value")).all()


def test_gpt_sampler_flags_nan_logits():
    from twoclocks.training.gpt import GPT, GPTConfig, sample_fixed, sample_naive
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_positions=4, vocab=3, depth=1, hidden=16, heads=2)).eval()
    u = torch.rand(6, 4)
    cells, ok = sample_fixed(model, u, return_finite=True)
    assert ok.all() and torch.equal(cells, sample_fixed(model, u))
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    for sampler in (sample_fixed, sample_naive):
        _, ok = sampler(model, u, return_finite=True)
        assert not ok.any()
