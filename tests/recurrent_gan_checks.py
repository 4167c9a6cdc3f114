"""Checks tests/test_seqgan.py and tests/test_relgan.py share: a run's TensorBoard curve, and that
two runs of the LSTM text-GAN trainers (experiments/trainers/recurrent_gan.py) ended alike."""

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.core.checkpoint import load_checkpoint


def curve(run_dir, tag):
    """[(step, value)] of a scalar tag, every point, in the order TensorBoard reads them."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def same_run(a_dir, b_dir, networks=("model", "discriminator"), curves=True):
    """last.pt of both runs: the same step and phase, bitwise the same networks and Adam states;
    and (curves) each step of the main curves logged once, with the same values."""
    a, b = load_checkpoint(a_dir / "last.pt"), load_checkpoint(b_dir / "last.pt")
    assert a["step"] == b["step"] and a["phase"] == b["phase"]
    for key in networks:
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    for key in ("optimizer_mle", "optimizer_g", "optimizer_d"):
        for i, state in a[key]["state"].items():
            assert all(torch.equal(state[k], b[key]["state"][i][k]) for k in state), key
        assert a[key]["param_groups"] == b[key]["param_groups"], key
    for tag in ("train/loss", "val/nll", "gan/d_loss", "gan/g_loss") if curves else ():
        assert curve(a_dir, tag) == curve(b_dir, tag), tag
