"""The engine's building blocks against reference implementations."""

import numpy as np
import pytest
import torch

from napari_dip.core.config import DIPConfig
from napari_dip.core.nets import Members, SkipNet, count_parameters
from napari_dip.core.optim import Backtracker, FlatAdam
from napari_dip.core.stats import RunningMoments
from napari_dip.core.stopping import WindowedVariance


def test_skip_net_matches_paper_parameter_count():
    assert count_parameters(SkipNet(DIPConfig(), out_channels=3)) == 2_217_831


def test_skip_net_shapes_2d_3d():
    cfg = DIPConfig(width=4, scales=2, skip_channels=1, input_channels=3)
    out = SkipNet(cfg, 2)(torch.rand(1, 3, 8, 16))
    assert out.shape == (1, 2, 8, 16) and 0 < out.min() and out.max() < 1
    out = SkipNet(cfg, 1, nd=3)(torch.rand(1, 3, 8, 8, 8))
    assert out.shape == (1, 1, 8, 8, 8)
    cfg = DIPConfig(width=4, scales=2, skip_channels=0, input_channels=3, upsample="nearest",
                    padding="zeros", norm="none")
    assert SkipNet(cfg, 1)(torch.rand(1, 3, 8, 8)).shape == (1, 1, 8, 8)


def _twin_nets():
    # no normalisation: conv biases before BatchNorm get gradients that are pure rounding
    # noise, which Adam amplifies to +-lr, so they cannot be compared between two programs
    cfg = DIPConfig(width=4, scales=2, skip_channels=1, input_channels=3, norm="none")
    torch.manual_seed(0)
    a = SkipNet(cfg, 1)
    b = SkipNet(cfg, 1)
    b.load_state_dict(a.state_dict())
    return a, b


def test_flat_adam_equals_torch_adam():
    a, b = _twin_nets()
    z, y = torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)
    flat = FlatAdam(a, lr=0.01, weight_decay=1e-3)
    ref = torch.optim.Adam(b.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(5):
        flat.backward(((a(z) - y) ** 2).mean())
        flat.step()
        ref.zero_grad()
        ((b(z) - y) ** 2).mean().backward()
        ref.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)
    # parameters really are views of the flat buffer
    assert all(p.untyped_storage().data_ptr() == flat.data.untyped_storage().data_ptr()
               for p in a.parameters())


def test_langevin_noise_only_on_conv_weights():
    a, _ = _twin_nets()
    flat = FlatAdam(a, lr=0.01)
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    flat.add_langevin_noise(2.0, torch.Generator().manual_seed(0))
    for n, p in a.named_parameters():
        changed = not torch.equal(before[n], p)
        assert changed == (p.dim() == 4), n
    diffs = torch.cat([(p - before[n]).flatten() for n, p in a.named_parameters() if p.dim() == 4])
    assert abs(float(diffs.detach().std()) - 0.02) < 0.002  # N(0, (2 lr)^2)


def test_backtracking_restores_weights_and_adam_state():
    a, _ = _twin_nets()
    z, y = torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)
    opt = FlatAdam(a, lr=0.01)
    bt = Backtracker(opt, db=5.0)
    loss = ((a(z) - y) ** 2).mean()
    bt.check(loss)
    opt.backward(loss)
    opt.step()
    bt.undo_if_bad()
    before2 = [t.clone() for t in opt.state_tensors()]  # weights that give step 2's loss
    loss = ((a(z) - y) ** 2).mean()
    assert not bool(bt.check(loss))  # similar loss: a good step
    opt.backward(loss)
    opt.step()
    bt.undo_if_bad()
    # a loss far worse (> 5 dB) than the last good one: the weights that produced it and
    # the update computed from it are discarded; weights and Adam moments return exactly
    # to those of the last good step
    loss = ((a(z) - y) ** 2).mean() * 10.0
    before3 = [t.clone() for t in opt.state_tensors()]
    assert bool(bt.check(loss))
    opt.backward(loss)
    opt.step()
    bt.undo_if_bad()
    for s, live in zip(before2, opt.state_tensors()):
        assert torch.equal(s, live)
    assert not any(torch.equal(b3, live) for b3, live in zip(before3, opt.state_tensors()))


def test_running_moments_equal_torch_var():
    xs = torch.randn(37, 3, 5, 4) * 3 + 10
    m = RunningMoments()
    for x in xs:
        m.add(x)
    torch.testing.assert_close(m.mean, xs.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.variance, xs.var(0), rtol=1e-4, atol=1e-4)


def test_windowed_variance_matches_brute_force():
    rng = np.random.default_rng(0)
    outs = torch.from_numpy(rng.normal(size=(60, 2, 6, 6)).astype(np.float32))
    outs *= torch.linspace(2, 0.1, 60).view(-1, 1, 1, 1)  # variance falls, then stays
    wv = WindowedVariance(outs[0], window=10, warmup=0)
    for i, o in enumerate(outs):
        wv.update(i, o, o)
        if i >= 9:
            win = outs[i - 9:i + 1]
            brute = ((win - win.mean(0)) ** 2).sum() / (10 * o.numel())
            torch.testing.assert_close(wv.last_value, brute, rtol=1e-4, atol=1e-6)
    assert int(wv.best_step) == 59
    assert torch.equal(wv.best_estimate, outs[59])


def test_short_axes_are_halved_less_instead_of_padded():
    from napari_dip.core.nets import axis_levels

    assert axis_levels((512, 512), 5) == (5, 5)  # the paper's net is unchanged
    assert axis_levels((16, 64, 64), 5) == (3, 5, 5)  # a thin volume keeps its 16 planes
    assert axis_levels((4, 100), 5) == (1, 5)
    cfg = DIPConfig(width=4, scales=3, skip_channels=1, input_channels=2)
    net = SkipNet(cfg, 1, nd=3, levels=(1, 3, 3))
    assert net(torch.rand(1, 2, 4, 16, 16)).shape == (1, 1, 4, 16, 16)
    assert count_parameters(net) == count_parameters(SkipNet(cfg, 1, nd=3))


def test_volume_not_padded_along_z():
    import napari_dip

    vol = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    res = napari_dip.restore(vol, preset="fast", steps=2, seed=0, device="cpu", width=4,
                             snapshot_every=1)
    assert res.info.padded_shape == (8, 32, 32) and res.image.shape == vol.shape


def test_flat_adam_keeps_channels_last_weights_and_equals_torch_adam():
    a, b = _twin_nets()
    a = a.to(memory_format=torch.channels_last)
    z, y = torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8)
    flat = FlatAdam(a, lr=0.01)
    ref = torch.optim.Adam(b.parameters(), lr=0.01)
    for _ in range(5):
        flat.backward(((a(z.contiguous(memory_format=torch.channels_last)) - y) ** 2).mean())
        flat.step()
        ref.zero_grad()
        ((b(z) - y) ** 2).mean().backward()
        ref.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)
        if pa.dim() == 4 and pa.shape[1] > 1 and pa.shape[2] > 1:
            assert pa.is_contiguous(memory_format=torch.channels_last)
            assert not pa.is_contiguous()
    assert all(p.untyped_storage().data_ptr() == flat.data.untyped_storage().data_ptr()
               for p in a.parameters())


def test_ensemble_net_equals_separate_nets():
    # K members side by side in one grouped net compute exactly what K nets compute
    cfg = DIPConfig(width=4, scales=2, skip_channels=2, input_channels=3)
    k = 3
    torch.manual_seed(0)
    nets = [SkipNet(cfg, 2) for _ in range(k)]
    group = SkipNet(cfg.replace(members=k), 2)
    assert count_parameters(group) == k * count_parameters(nets[0])
    singles = [dict(n.named_parameters()) for n in nets]
    with torch.no_grad():
        for name, p in group.named_parameters():
            for i in range(k):
                p.view(k, -1)[i] = singles[i][name].reshape(-1)
    zs = [torch.rand(1, 3, 16, 16) for _ in range(k)]
    out = group(torch.cat(zs, 1))
    for i, (net, z) in enumerate(zip(nets, zs)):
        torch.testing.assert_close(out[:, 2 * i:2 * i + 2], net(z), rtol=1e-4, atol=1e-5)
    # and 3-D
    group3 = SkipNet(cfg.replace(members=2), 1, nd=3)
    assert group3(torch.rand(1, 6, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_members_as_separate_nets_compute_what_the_grouped_net_computes():
    # the CPU runs an ensemble's members one after the other, from the grouped net's weights
    cfg = DIPConfig(width=4, scales=2, skip_channels=2, input_channels=3, members=3)
    torch.manual_seed(0)
    group = SkipNet(cfg, 2)
    sep = Members(group)
    assert count_parameters(sep) == count_parameters(group)
    z = torch.rand(1, 9, 16, 16)
    out_g, out_s = group(z), sep(z)
    torch.testing.assert_close(out_s, out_g, rtol=1e-4, atol=1e-5)
    # the same gradients, member by member
    out_g.square().sum().backward()
    out_s.square().sum().backward()
    grads = dict(group.named_parameters())
    for i, net in enumerate(sep.nets):
        for name, p in net.named_parameters():
            torch.testing.assert_close(p.grad.reshape(-1),
                                       grads[name].grad.reshape(3, -1)[i], rtol=2e-3,
                                       atol=2e-5)
    # a member is a copy: training the separate nets leaves the grouped net as it was
    before = [p.detach().clone() for p in group.parameters()]
    with torch.no_grad():
        for p in sep.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, p) for a, p in zip(before, group.parameters()))
    # the normalisation's statistics are copied member by member too (eval mode uses them)
    with torch.no_grad():
        for name, b in group.named_buffers():
            if b.dim():
                b.copy_(torch.rand_like(b) + 0.5)
    group.eval()
    sep = Members(group).eval()
    torch.testing.assert_close(sep(z), group(z), rtol=1e-4, atol=1e-5)
    # other normalisations, 3-D with fewer halvings along one axis, and the layout
    # attributes the engine reads
    for norm in ("instance", "none"):
        g2 = SkipNet(cfg.replace(norm=norm), 2)
        torch.testing.assert_close(Members(g2)(z), g2(z), rtol=1e-4, atol=1e-5)
    g3 = SkipNet(cfg.replace(members=2, input_channels=1), 1, nd=3, levels=(1, 2, 2))
    s3 = Members(g3)
    z3 = torch.rand(1, 2, 4, 8, 8)
    torch.testing.assert_close(s3(z3), g3(z3), rtol=1e-4, atol=1e-5)
    assert (s3.nd, s3.multiples) == (g3.nd, g3.multiples)
    with pytest.raises(ValueError, match="z: expected a multiple of 2 channels"):
        s3(torch.rand(1, 3, 4, 8, 8))
    with pytest.raises(ValueError, match="several members"):
        Members(SkipNet(cfg.replace(members=1), 2))
    with pytest.raises(ValueError, match=r"i: expected a member in \[0, 3\)"):
        group.member(3)


def test_stop_rule_starts_early_only_once_the_data_are_fitted():
    # the variance falls to its minimum at step 30, then rises; the warm-up is 50 steps
    rng = np.random.default_rng(1)
    scale = torch.cat([torch.linspace(2, 0.1, 31), torch.linspace(0.1, 1, 49)])
    outs = torch.from_numpy(rng.normal(size=(80, 1, 6, 6)).astype(np.float32))
    outs *= scale.view(-1, 1, 1, 1)
    losses = torch.linspace(1.0, 0.0, 80)  # the loss reaches 0.75 at step 20

    def best(threshold, fit_losses):
        wv = WindowedVariance(outs[0], window=5, warmup=50, fit_threshold=threshold)
        for i, o in enumerate(outs):
            wv.update(i, o, o, fit_losses[i])
        return int(wv.best_step)

    assert best(0.0, losses) >= 50  # the warm-up alone: the true minimum is missed
    assert 28 <= best(0.75, losses) <= 36  # fitted at step 20: the minimum is found
    assert best(0.75, torch.ones(80)) >= 50  # never fitted: the warm-up still rules


def test_noise_variance_estimate():
    from napari_dip.core.arrays import noise_variance

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    smooth = (0.5 + 0.3 * np.sin(xx / 9.0) * np.cos(yy / 11.0))[None]
    assert noise_variance(smooth) < 1e-5
    noisy = smooth + rng.normal(0, 0.1, smooth.shape)
    assert abs(noise_variance(noisy) ** 0.5 - 0.1) < 0.01
    vol = rng.normal(0, 0.05, (1, 8, 32, 32))
    assert abs(noise_variance(vol) ** 0.5 - 0.05) < 0.005
    # missing pixels (set to 0.5 by the engine) are left out
    known = (rng.random(smooth.shape) > 0.3).astype(np.float32)
    holed = np.where(known > 0, noisy, 0.5)
    assert abs(noise_variance(holed, known) ** 0.5 - 0.1) < 0.015


def test_engine_runs_members_as_separate_nets_on_the_cpu(monkeypatch):
    # the same seed draws the same nets whichever way the members are laid out: the first
    # step's loss (before any update) agrees; later steps part by float rounding, which
    # Adam's first steps amplify for weights with gradients near zero
    import napari_dip
    import napari_dip.core.engine as engine

    noisy = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    # (pure noise reads a signal-to-noise ratio of 1, which would set R2R's strength to 2:
    # R2R's 0.5 keeps the loss's rounding as small as the margins below assume)
    kw = dict(preset="fast", members=2, steps=4, auto_stop=False, refine="off", seed=3,
              device="cpu", snapshot_every=1, r2r_alpha=0.5)
    built = []
    real = engine.Members
    monkeypatch.setattr(engine, "Members", lambda net: built.append(net) or real(net))

    def losses(**extra):
        return np.array([s.loss for s in napari_dip.iterate(noisy, **dict(kw, **extra))])

    separate = losses()
    assert len(separate) == 4 and len(built) == 1  # the grouped net, made separate nets
    assert losses(seed=4)[0] != pytest.approx(separate[0], rel=1e-3)
    monkeypatch.setattr(engine, "SEPARATE_MEMBERS", ())
    grouped = losses()
    assert len(built) == 2  # the seed-4 run; none for the grouped run
    assert grouped[0] == pytest.approx(separate[0], rel=1e-5)
    # the training that follows, through the optimiser on the separate nets' weights: the
    # first update agrees closely (R2R's loss less its target's noise variance lies near
    # zero: an absolute margin too), later ones within Adam's amplified rounding (the
    # losses fall by about 0.014 over these steps; weights left untrained would keep them)
    np.testing.assert_allclose(grouped[:2], separate[:2], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(grouped, separate, atol=3e-4)
