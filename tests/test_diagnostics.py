"""Training diagnostics (experiments/diagnostics.py, experiments/scoring/probes.py,
experiments/reporting/diagnostic_figures.py): the statistics on hand-made tiny models, hooks
present only while collecting, the TensorBoard tags the trainer writes and what is read back
from them, and the figure command with what each figure draws."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from baselines import MODELS
from experiments import diagnostics, train_lm
from experiments.core.logger import RunLogger
from experiments.generators.generation import load_model
from experiments.reporting.diagnostic_figures import read_recorded
from experiments.scoring.probes import Diagnostics, log_stats, probed_layers, saturation

V, BLOCK_SIZE = 16, 12
TINY = {  # small sizes for every registry entry
    "bigram": dict(), "bigram-neural": dict(),
    "mlp": dict(context=4, n_embd=8, n_embd2=32), "wavenet": dict(context=8, n_embd=8, n_hidden=32),
    "rnn": dict(n_embd=16, n_embd2=32), "gru": dict(n_embd=16, n_embd2=32), "lstm": dict(n_embd=16, n_embd2=32),
    "bow": dict(n_embd=16, n_embd2=32), "gpt2": dict(n_layer=2, n_head=2, n_embd=32),
}


def tiny_net(scale: float):
    """Linear(4, 8) -> Tanh -> Linear(8, 3), the first layer's weights all `scale`."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        net[0].weight.fill_(scale)
        net[0].bias.zero_()
    return net


def one_step(net, x, lr=0.1):
    """A diagnostics step with plain SGD, whose update is exactly -lr * grad."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    diag = Diagnostics(net)
    diag.start()
    loss = net(x).pow(2).mean()
    loss.backward()
    diag.before_step()
    opt.step()
    return diag, diag.after_step()


def test_tanh_fed_large_values_is_fully_saturated_and_small_ones_not_at_all():
    x = torch.ones(32, 4)
    _, stats = one_step(tiny_net(100.0), x)
    assert stats["activation"]["1"]["kind"] == "tanh"
    assert stats["activation"]["1"]["saturation"] == 1.0
    _, stats = one_step(tiny_net(1e-3), x)
    assert stats["activation"]["1"]["saturation"] == 0.0


def test_known_tanh_saturation_is_logged_and_read_back(tmp_path):
    """A hand-made activation: every unit of the tanh layer sees x[:, 0] of its row, and
    |tanh(v)| > 0.97 exactly when |v| > atanh(0.97) = 2.09, so rows (0.5, 1, 3, -3) saturate
    half of the 4 x 8 values. What log_stats writes reads back as the same figures."""
    net = tiny_net(1.0)
    with torch.no_grad():
        net[0].weight[:, 1:].normal_()  # W[:, 0] = 1; weight std > 0, so the ratios are defined
    x = torch.zeros(4, 4)
    x[:, 0] = torch.tensor([0.5, 1.0, 3.0, -3.0])
    _, stats = one_step(net, x)
    tanh = stats["activation"]["1"]
    assert tanh["saturation"] == 0.5 and len(tanh["values"]) == 32
    expected_mean = (math.tanh(0.5) + math.tanh(1.0)) / 4  # tanh(3) and tanh(-3) cancel
    assert tanh["mean"] == pytest.approx(expected_mean, abs=1e-7)

    log = RunLogger(tmp_path)
    log_stats(log, stats, step=7)
    log.close()
    recorded = read_recorded(tmp_path)
    scalars, hists = recorded["scalars"], recorded["histograms"]
    # mean, std, saturation of 3 layers; the std of 4 gradients; grad:data and update:data of 2 weights
    assert len(scalars) == 3 * 3 + 4 + 2 + 2
    assert set(hists) == {"activation/unbounded/0", "activation/tanh/1", "activation/unbounded/2",
                          "gradient/0.weight", "gradient/0.bias", "gradient/2.weight", "gradient/2.bias"}
    assert scalars["activation/saturation/1"] == ([7], [0.5])
    assert scalars["activation/mean/1"][1][0] == pytest.approx(expected_mean, abs=1e-6)  # float32 in the file
    assert scalars["ratio/update_data/0.weight"][1][0] == pytest.approx(stats["update_data"]["0.weight"], abs=1e-5)
    for tag, (steps, values) in scalars.items():
        assert steps == [7]
        if tag.startswith("activation/saturation/"):
            assert 0 <= values[0] <= 1, tag
    step, limits, counts = hists["activation/tanh/1"]
    assert step == 7 and sum(counts) == 32  # every value in the histogram
    assert min(limits) <= -math.tanh(3.0) and max(limits) >= math.tanh(3.0)


def test_activation_gradient_and_ratio_statistics_are_the_definitions():
    torch.manual_seed(1)
    net = tiny_net(0.5)
    with torch.no_grad():
        net[0].weight.normal_()
    x = torch.randn(64, 4)
    before = net[0].weight.detach().clone()
    hidden = net[0](x).detach()
    lr = 0.1
    diag, stats = one_step(net, x, lr=lr)
    a = stats["activation"]["0"]  # the first Linear's output
    assert a["mean"] == pytest.approx(hidden.mean().item(), abs=1e-6)
    assert a["std"] == pytest.approx(hidden.std(unbiased=False).item(), rel=1e-5)
    tail = ((hidden - hidden.mean()).abs() > 3 * hidden.std(unbiased=False)).float().mean().item()
    assert a["saturation"] == pytest.approx(tail)  # unbounded outputs: share beyond 3 std
    g = net[0].weight.grad
    assert stats["gradient"]["0.weight"]["std"] == pytest.approx(g.std(unbiased=False).item(), rel=1e-5)
    assert stats["gradient"]["0.weight"]["grad_data"] == pytest.approx(
        (g.std(unbiased=False) / before.std(unbiased=False)).item(), rel=1e-5)
    assert "grad_data" not in stats["gradient"]["0.bias"]  # 2-D weights only
    # SGD: the change across the step is lr * grad, so update:data = log10(lr * std(grad) / std(W))
    expected = math.log10(lr * g.std(unbiased=False).item() / before.std(unbiased=False).item())
    assert stats["update_data"]["0.weight"] == pytest.approx(expected, abs=1e-4)
    assert set(stats["update_data"]) == {"0.weight", "2.weight"}


def test_hooks_exist_only_while_collecting():
    net = tiny_net(1.0)
    diag = Diagnostics(net)
    assert all(not m._forward_hooks for m in net.modules())
    diag.start()
    assert sum(len(m._forward_hooks) for m in net.modules()) == 3  # Linear, Tanh, Linear
    net(torch.ones(2, 4)).sum().backward()
    diag.before_step()
    assert all(not m._forward_hooks for m in net.modules())
    net(torch.ones(2, 4))  # no hook: nothing is collected outside a diagnostics step
    assert diag.outputs == {}


def test_saturation_rules():
    a = torch.tensor([-1.0, -0.98, -0.5, 0.0, 0.5, 0.98])
    assert saturation(a, "tanh") == pytest.approx(3 / 6)  # -1, -0.98 and 0.98
    assert saturation(torch.tensor([0.01, 0.5, 0.99, 0.2]), "sigmoid") == pytest.approx(2 / 4)
    assert saturation(torch.relu(torch.tensor([-1.0, 0.0, 2.0, 3.0])), "rectifier") == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="unknown kind"):
        saturation(a, "nope")


@pytest.mark.parametrize("name", [n for n in MODELS if n != "bigram"])
def test_every_trained_model_has_probed_layers_and_finite_statistics(name):
    model_cls, config_cls = MODELS[name]
    torch.manual_seed(0)
    model = model_cls(config_cls(vocab_size=V, block_size=BLOCK_SIZE, **TINY[name])).train()
    layers = probed_layers(model)
    # every model but the neural bigram (a bare table lookup, nothing to hook) has layers to watch
    assert bool(layers) == (name != "bigram-neural"), f"{name}: {[n for n, _, _ in layers]}"
    with torch.no_grad():  # the neural bigram starts as zeros, whose update:data ratio is undefined (NaN)
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randint(4, V, (4, BLOCK_SIZE))
    diag = Diagnostics(model)
    diag.start()
    _, loss = model(x, x)
    loss.backward()
    diag.before_step()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    stats = diag.after_step()
    assert set(stats["activation"]) == {n for n, _, _ in layers}
    for s in stats["activation"].values():
        assert math.isfinite(s["mean"]) and math.isfinite(s["std"]) and 0 <= s["saturation"] <= 1
    assert stats["update_data"] and all(math.isfinite(v) for v in stats["update_data"].values())
    if name in ("rnn", "gru", "lstm"):
        # one call per time step, all collected: the hidden state of every position
        assert stats["activation"]["cell"]["kind"] == "tanh"
        assert len(stats["activation"]["cell"]["values"]) == 4 * BLOCK_SIZE * TINY[name]["n_embd2"]


TRAIN = ["--dataset", "numbers", "--model", "mlp", "--context", "4", "--n_embd", "8", "--n_embd2", "32",
         "--batch_size", "16", "--max_steps", "12", "--eval_interval", "12", "--num_samples", "2",
         "--progress", "false", "--warmup_steps", "2", "--diagnostics_interval", "4"]


@pytest.fixture(scope="module")
def diag_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag")
    train_lm.main(TRAIN + ["--out_dir", str(out), "--run_name", "r"])
    return out / "r"


def test_trainer_logs_diagnostics_tags_at_the_interval(diag_run):
    acc = EventAccumulator(str(diag_run), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars, hists = set(acc.Tags()["scalars"]), set(acc.Tags()["histograms"])
    for tag in ("activation/mean/tanh", "activation/std/tanh", "activation/saturation/tanh",
                "activation/saturation/bn", "gradient/std/hidden.weight", "ratio/grad_data/hidden.weight",
                "ratio/update_data/hidden.weight", "ratio/update_data/lm_head.weight"):
        assert tag in scalars, tag
    assert {"activation/tanh/tanh", "activation/unbounded/hidden", "gradient/hidden.weight"} <= hists
    assert [e.step for e in acc.Scalars("ratio/update_data/hidden.weight")] == [4, 8, 12]


def test_recorded_run_reads_back_one_curve_per_logged_statistic(diag_run):
    """read_recorded (what the figures draw) holds a curve for every statistic of every probed
    layer and parameter, at every diagnostics step, and one histogram for each."""
    model, _ = load_model(diag_run / "last.pt", "cpu")
    layers = {name: kind for name, _, kind in probed_layers(model)}
    params = {name: p.dim() for name, p in model.named_parameters()}
    weights = {name for name, dim in params.items() if dim == 2}
    recorded = read_recorded(diag_run)
    scalars, hists = recorded["scalars"], recorded["histograms"]
    expected = ({f"activation/{k}/{n}" for n in layers for k in ("mean", "std", "saturation")}
                | {f"gradient/std/{n}" for n in params}
                | {f"ratio/{r}/{n}" for n in weights for r in ("grad_data", "update_data")})
    assert set(scalars) == expected  # and no other scalar of the run (train/loss, val/nll, ...)
    assert set(hists) == {f"activation/{k}/{n}" for n, k in layers.items()} | {f"gradient/{n}" for n in params}
    for tag, (steps, values) in scalars.items():
        assert steps == [4, 8, 12] and all(math.isfinite(v) for v in values), tag
        if "/saturation/" in tag:
            assert all(0 <= v <= 1 for v in values), tag
        if "/std/" in tag:
            assert all(v >= 0 for v in values), tag
    assert scalars["activation/saturation/tanh"][1] != [0.0, 0.0, 0.0]  # tanh units do saturate here
    for tag, (step, limits, counts) in hists.items():
        assert step == 12 and len(limits) == len(counts) and sum(counts) > 0, tag  # the last one


FIGURES = ["activations.png", "gradients.png", "update_data.png", "saturation.png"]  # the order they are drawn


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures the command draws, in order, kept as they are closed."""
    import matplotlib.pyplot as plt
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    return figures


def _assert_pngs(paths, names):
    import matplotlib.image
    assert [p.name for p in paths] == names
    for p in paths:
        assert p.stat().st_size > 0
        image = matplotlib.image.imread(p)  # opens as an image
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def _curves(fig):
    """{label: (x, y)} of the lines of a one-panel figure, reference lines left out."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")}


def _assert_histories(figures, scalars):
    """update_data.png and saturation.png draw the recorded curves, one line per weight / layer."""
    _, _, update, sat = figures
    for fig, prefix in ((update, "ratio/update_data/"), (sat, "activation/saturation/")):
        want = {t[len(prefix):]: (steps, values) for t, (steps, values) in scalars.items() if t.startswith(prefix)}
        got = _curves(fig)
        assert set(got) == set(want)
        for name, (steps, values) in want.items():
            assert got[name][0] == steps and got[name][1] == pytest.approx(values)
    assert any(list(line.get_ydata()) == [-3.0, -3.0] for line in update.axes[0].get_lines())  # the reference


def test_figure_command_from_recorded_run(diag_run, tmp_path, drawn):
    paths = diagnostics.main(["--run", str(diag_run), "--out", str(tmp_path / "figs")])
    _assert_pngs(paths, FIGURES)
    recorded = read_recorded(diag_run)
    scalars, hists = recorded["scalars"], recorded["histograms"]
    activations, gradients = drawn[0], drawn[1]
    # one panel per kind of output, one density per layer of that kind, titled with the last step
    kinds = sorted({t.split("/")[1] for t in hists if t.startswith("activation/")})
    assert [ax.get_title() for ax in activations.axes[:len(kinds)]] == [f"r: {k} outputs (step 12)" for k in kinds]
    for kind, ax in zip(kinds, activations.axes):
        layers = sorted(t.split("/")[2] for t in hists if t.startswith(f"activation/{kind}/"))
        labels = [line.get_label() for line in ax.get_lines()]
        assert [label.split(":")[0] for label in labels] == layers
        for name, label in zip(layers, labels):  # the legend states the last recorded figures
            assert f"saturated {100 * scalars[f'activation/saturation/{name}'][1][-1]:.1f}%" in label
    # the gradient figure: the 2-D weights only
    weights = sorted(t[len("ratio/grad_data/"):] for t in scalars if t.startswith("ratio/grad_data/"))
    assert [line.get_label().split(":")[0] for line in gradients.axes[0].get_lines()] == weights
    _assert_histories(drawn, scalars)


def test_figure_command_from_checkpoint(diag_run, tmp_path, drawn):
    paths = diagnostics.main(["--ckpt", str(diag_run / "last.pt"), "--out", str(tmp_path / "figs")])
    _assert_pngs(paths, FIGURES)
    # distributions from a fresh pass of the checkpoint at its step; histories from the run's events
    assert "last.pt (step 12):" in drawn[0].axes[0].get_title()
    model, _ = load_model(diag_run / "last.pt", "cpu")
    drawn_layers = {line.get_label().split(":")[0] for ax in drawn[0].axes for line in ax.get_lines()}
    assert drawn_layers == {name for name, _, _ in probed_layers(model)}
    _assert_histories(drawn, read_recorded(diag_run)["scalars"])


def test_figure_command_needs_a_run_or_a_checkpoint():
    with pytest.raises(ValueError, match="--run"):
        diagnostics.main([])
