import copy
import doctest
import io

import pytest
import torch

from fptt_ext.fptt import FPTT
from fptt_ext.fptt import optimizer as fptt_module

DT = torch.float64


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).to(DT)


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 4, generator=g, dtype=DT), torch.randn(5, 2, generator=g, dtype=DT))
            for _ in range(n)]


def task_loss(model, x, y):
    return (model(x) - y).pow(2).mean()


def make_opt(name, params):
    return torch.optim.SGD(params, lr=0.1) if name == "sgd" else torch.optim.Adam(params, lr=3e-2)


def run_fptt(model, fptt, data):
    for x, y in data:
        if fptt.variant == "exact":
            loss = task_loss(model, x, y) + fptt.regularizer()
            loss.backward()
            fptt.step(lambda: task_loss(model, x, y))  # noqa: B023 (called at once)
        else:
            (task_loss(model, x, y) + fptt.regularizer()).backward()
            fptt.step()
        fptt.zero_grad()


def maxdiff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


# ---------------------------------------------------------------- reference loops
def reference_practical(model, opt, data, alpha, beta):
    params = list(model.parameters())
    w_bar = [p.detach().clone() for p in params]
    lam = [torch.zeros_like(p) for p in params]
    for x, y in data:
        reg = 0.0
        for p, wb, l in zip(params, w_bar, lam):
            reg = reg + alpha / 2 * ((p - wb) ** 2).sum() - (p * l).sum()
        opt.zero_grad()
        (task_loss(model, x, y) + reg).backward()
        opt.step()
        with torch.no_grad():
            for i, p in enumerate(params):
                lam[i] = lam[i] - alpha * (p - w_bar[i])
                w_bar[i] = (1 - beta) * w_bar[i] + beta * p - (beta / alpha) * lam[i]
    return w_bar, lam


def reference_exact(model, opt, data, alpha):
    params = list(model.parameters())
    w_bar = [p.detach().clone() for p in params]
    gprev = [torch.zeros_like(p) for p in params]
    for x, y in data:
        reg = 0.0
        for p, wb, g in zip(params, w_bar, gprev):
            reg = reg + alpha / 2 * ((p - wb - g / (2 * alpha)) ** 2).sum()
        opt.zero_grad()
        (task_loss(model, x, y) + reg).backward()
        opt.step()
        opt.zero_grad()
        task_loss(model, x, y).backward()  # gradient at W_{t+1}, same batch
        with torch.no_grad():
            for i, p in enumerate(params):
                gprev[i] = p.grad.clone()
                w_bar[i] = (w_bar[i] + p) / 2 - gprev[i] / (2 * alpha)
        opt.zero_grad()
    return w_bar, gprev


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_practical_matches_reference(opt_name):
    data = batches(20)
    m1, m2 = make_model(), make_model()
    fptt = FPTT(m1.parameters(), make_opt(opt_name, m1.parameters()), alpha=0.3, beta=0.7)
    run_fptt(m1, fptt, data)
    w_bar, lam = reference_practical(m2, make_opt(opt_name, m2.parameters()), data, 0.3, 0.7)
    ps = list(m1.parameters())
    assert maxdiff(ps, m2.parameters()) < 1e-6
    assert maxdiff([fptt.state[p]["W_bar"] for p in ps], w_bar) < 1e-6
    assert maxdiff([fptt.state[p]["lam"] for p in ps], lam) < 1e-6
    assert max(l.abs().max().item() for l in lam) > 1e-4  # the comparison is not vacuous


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_exact_matches_reference(opt_name):
    data = batches(20)
    m1, m2 = make_model(), make_model()
    fptt = FPTT(m1.parameters(), make_opt(opt_name, m1.parameters()), alpha=0.5, variant="exact")
    run_fptt(m1, fptt, data)
    w_bar, gprev = reference_exact(m2, make_opt(opt_name, m2.parameters()), data, 0.5)
    ps = list(m1.parameters())
    assert maxdiff(ps, m2.parameters()) < 1e-6
    assert maxdiff([fptt.state[p]["W_bar"] for p in ps], w_bar) < 1e-6
    assert maxdiff([fptt.state[p]["grad_prev"] for p in ps], gprev) < 1e-6
    assert set(fptt.state[ps[0]]) == {"W_bar", "grad_prev"}


@pytest.mark.parametrize("variant", ["practical", "exact"])
def test_regularizer_value_and_grad(variant):
    model = make_model()
    ps = list(model.parameters())
    fptt = FPTT(ps, torch.optim.SGD(ps, lr=0.1), alpha=0.2, variant=variant)
    key = "lam" if variant == "practical" else "grad_prev"
    torch.manual_seed(3)
    for p in ps:  # arbitrary non-trivial state
        fptt.state[p]["W_bar"].copy_(p + torch.randn_like(p))
        fptt.state[p][key].copy_(torch.randn_like(p))
    reg = fptt.regularizer()
    reg.backward()
    a, expect = 0.2, 0.0
    for p in ps:
        wb, t = fptt.state[p]["W_bar"], fptt.state[p][key]
        with torch.no_grad():
            if variant == "practical":
                expect += a / 2 * ((p - wb) ** 2).sum() - (p * t).sum()
                grad = a * (p - wb) - t
            else:
                expect += a / 2 * ((p - wb - t / (2 * a)) ** 2).sum()
                grad = a * (p - wb - t / (2 * a))
        assert torch.allclose(p.grad, grad, atol=1e-10)
    assert reg.dim() == 0 and abs(reg.item() - expect.item()) < 1e-9


def test_param_groups_lr_scheduler_and_clipping():
    data = batches(6)
    m1, m2 = make_model(), make_model()
    opt1 = torch.optim.SGD(m1.parameters(), lr=0.1)
    groups = [{"params": m1[0].parameters(), "alpha": 0.2, "beta": 0.3}, {"params": m1[2].parameters()}]
    fptt = FPTT(groups, opt1, alpha=0.5, beta=0.9)
    assert [(g["alpha"], g["beta"]) for g in fptt.param_groups] == [(0.2, 0.3), (0.5, 0.9)]
    sched = torch.optim.lr_scheduler.StepLR(fptt.optimizer, step_size=2, gamma=0.5)
    for x, y in data:
        (task_loss(m1, x, y) + fptt.regularizer()).backward()
        fptt.step(); fptt.zero_grad(); sched.step()
    assert opt1.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)

    # same run by hand, per-group hyperparameters and the same schedule
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.1)
    hp = [(p, 0.2, 0.3) for p in m2[0].parameters()] + [(p, 0.5, 0.9) for p in m2[2].parameters()]
    st = {p: [p.detach().clone(), torch.zeros_like(p)] for p, _, _ in hp}
    for k, (x, y) in enumerate(data):
        opt2.param_groups[0]["lr"] = 0.1 * 0.5 ** (k // 2)
        reg = sum(a / 2 * ((p - st[p][0]) ** 2).sum() - (p * st[p][1]).sum() for p, a, _ in hp)
        opt2.zero_grad(); (task_loss(m2, x, y) + reg).backward(); opt2.step()
        with torch.no_grad():
            for p, a, b in hp:
                st[p][1] = st[p][1] - a * (p - st[p][0])
                st[p][0] = (1 - b) * st[p][0] + b * p - b / a * st[p][1]
    assert maxdiff(m1.parameters(), m2.parameters()) < 1e-10
    assert maxdiff([fptt.state[p]["W_bar"] for p in m1.parameters()], [st[p][0] for p, _, _ in hp]) < 1e-10

    # clipping: with SGD(lr=1) the parameter change equals the clipped gradient
    model = make_model()
    fptt = FPTT(model.parameters(), torch.optim.SGD(model.parameters(), lr=1.0), max_grad_norm=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    (task_loss(model, *data[0]) * 1000).backward()
    fptt.step()
    delta = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    assert delta.norm().item() == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize("variant", ["practical", "exact"])
def test_state_dict_round_trip(variant):
    data = batches(10)
    m1 = make_model()
    f1 = FPTT(m1.parameters(), torch.optim.Adam(m1.parameters(), 1e-2), variant=variant, alpha=0.4)
    run_fptt(m1, f1, data[:5])
    buf = io.BytesIO()
    torch.save(f1.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    m2 = copy.deepcopy(m1)
    f2 = FPTT(m2.parameters(), torch.optim.Adam(m2.parameters(), 1e-2), variant=variant)
    f2.load_state_dict(sd)
    assert f2.param_groups[0]["alpha"] == 0.4
    run_fptt(m1, f1, data[5:])
    run_fptt(m2, f2, data[5:])
    key = f1._trace_key
    assert maxdiff(m1.parameters(), m2.parameters()) == 0
    for k in ("W_bar", key):
        assert maxdiff([f1.state[p][k] for p in m1.parameters()],
                       [f2.state[p][k] for p in m2.parameters()]) == 0

    m3 = torch.nn.Linear(4, 2).to(DT)
    f3 = FPTT(m3.parameters(), torch.optim.Adam(m3.parameters()), variant=variant)
    with pytest.raises(ValueError, match="count"):
        f3.load_state_dict(sd)
    m4 = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(DT)
    f4 = FPTT(m4.parameters(), torch.optim.Adam(m4.parameters()), variant=variant)
    with pytest.raises(ValueError, match="shape mismatch"):
        f4.load_state_dict(sd)


def _snapshot(model, fptt):
    return [t.detach().clone() for p in model.parameters()
            for t in (p, fptt.state[p]["W_bar"], fptt.state[p]["lam"])]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_gradient(bad):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    fptt = FPTT(model.parameters(), opt)
    run_fptt(model, fptt, batches(2))  # non-trivial state first
    before = _snapshot(model, fptt)
    (task_loss(model, *batches(1)[0]) + fptt.regularizer()).backward()
    model[0].weight.grad[0, 0] = bad
    with pytest.raises(FloatingPointError, match="non-finite"):
        fptt.step()
    assert maxdiff(before, _snapshot(model, fptt)) == 0

    fptt.nonfinite = "skip"
    adam_steps = opt.state[model[0].weight]["step"].item()
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert fptt.step() is None
    assert maxdiff(before, _snapshot(model, fptt)) == 0
    assert opt.state[model[0].weight]["step"].item() == adam_steps


def _full_snapshot(model, fptt):
    """Parameters, FPTT state and the wrapped optimizer's state, as plain tensors."""
    out = _snapshot(model, fptt) if fptt.variant == "practical" else [
        t.detach().clone() for p in model.parameters() for t in (p, fptt.state[p]["W_bar"], fptt.state[p]["grad_prev"])]
    return out + [v.clone() for p in model.parameters() for v in fptt.optimizer.state[p].values()]


@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
def test_exact_nonfinite_closure_gradient_undoes_the_step(nonfinite):
    """The exact variant learns of a NaN in the closure's gradient after the wrapped optimizer
    has stepped: that step is undone, so nothing changes, and it counts as skipped."""
    model = make_model()
    fptt = FPTT(model.parameters(), torch.optim.Adam(model.parameters(), 1e-2), variant="exact", nonfinite=nonfinite)
    run_fptt(model, fptt, batches(2))  # Adam's moments and grad_prev are non-zero by now
    before = _full_snapshot(model, fptt)
    x, y = batches(1, seed=5)[0]
    (task_loss(model, x, y) + fptt.regularizer()).backward()  # a finite task gradient ...

    def closure():  # ... but a NaN one at the updated weights
        return task_loss(model, x, y) * torch.tensor(float("nan"), dtype=DT)

    if nonfinite == "raise":
        with pytest.raises(FloatingPointError, match="closure"):
            fptt.step(closure)
    else:
        with pytest.warns(RuntimeWarning, match="closure"):
            assert fptt.step(closure) is None
    assert fptt.skipped_steps == 1
    assert maxdiff(before, _full_snapshot(model, fptt)) == 0
    assert all(p.grad is None for p in model.parameters())
    # and training goes on from there exactly as if that step had never been tried
    ref = make_model()
    ref_fptt = FPTT(ref.parameters(), torch.optim.Adam(ref.parameters(), 1e-2), variant="exact")
    run_fptt(ref, ref_fptt, batches(2))
    fptt.zero_grad()
    run_fptt(model, fptt, batches(1, seed=7))
    run_fptt(ref, ref_fptt, batches(1, seed=7))
    assert maxdiff(_full_snapshot(model, fptt), _full_snapshot(ref, ref_fptt)) == 0


@pytest.mark.parametrize("variant", ["practical", "exact"])
def test_step_without_any_gradient_raises(variant):
    model = make_model()
    fptt = FPTT(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), variant=variant)
    before = _snapshot(model, fptt) if variant == "practical" else None
    with pytest.raises(RuntimeError, match="no gradient on any tracked parameter; call loss.backward"):
        fptt.step() if variant == "practical" else fptt.step(lambda: task_loss(model, *batches(1)[0]))
    if before is not None:
        assert maxdiff(before, _snapshot(model, fptt)) == 0
    # one parameter without a gradient (unused in this step) is fine: it gets R's gradient alone
    model[2].weight.grad = torch.zeros_like(model[2].weight)
    fptt.add_regularizer_grad_()
    fptt.step() if variant == "practical" else fptt.step(lambda: task_loss(model, *batches(1)[0]))


def test_reset_running_estimate():
    model = make_model()
    fptt = FPTT(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1))
    run_fptt(model, fptt, batches(3))
    fptt.reset_running_estimate()
    for p in model.parameters():
        assert torch.equal(fptt.state[p]["W_bar"], p.detach())
        assert not fptt.state[p]["lam"].any()
    assert fptt.regularizer().item() == 0


def test_bad_inputs():
    model = make_model()
    ps = list(model.parameters())
    opt = torch.optim.SGD(ps, lr=0.1)
    for alpha in (0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"alpha must be a finite number > 0, got {alpha}"):
            FPTT(ps, opt, alpha=alpha)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        FPTT([{"params": ps, "alpha": -1.0}], opt)
    with pytest.raises(ValueError, match="beta"):
        FPTT(ps, opt, beta=0)
    with pytest.raises(ValueError, match="variant"):
        FPTT(ps, opt, variant="approx")
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        FPTT(ps, "sgd")
    with pytest.raises(ValueError, match="2 of 4 FPTT parameters are not managed"):
        FPTT(ps, torch.optim.SGD(ps[:2], lr=0.1))
    fptt = FPTT(ps, opt, variant="exact")
    (task_loss(model, *batches(1)[0]) + fptt.regularizer()).backward()
    with pytest.raises(ValueError, match="closure"):
        fptt.step()
    # frozen parameters are simply not tracked
    ps[0].requires_grad_(False)
    assert len(FPTT(ps, opt).state) == 3


def test_docstring_examples():
    failures, tried = doctest.testmod(fptt_module, raise_on_error=False)
    assert tried > 0 and failures == 0


def test_load_running_estimate_sets_weights_to_w_bar():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    fptt = FPTT(net.parameters(), torch.optim.Adam(net.parameters(), 1e-2), alpha=0.1, beta=0.3)
    for _ in range(4):
        loss = net(torch.randn(5, 3)).pow(2).mean() + fptt.regularizer()
        loss.backward()
        fptt.step()
        fptt.zero_grad()
    w_bar = [fptt.state[p]["W_bar"].clone() for p in net.parameters()]
    lam = [fptt.state[p]["lam"].clone() for p in net.parameters()]
    assert any(not torch.equal(p, wb) for p, wb in zip(net.parameters(), w_bar))
    fptt.load_running_estimate()
    for p, wb, lm in zip(net.parameters(), w_bar, lam):
        assert torch.equal(p.data, wb)  # W <- W_bar
        assert torch.equal(fptt.state[p]["W_bar"], wb) and torch.equal(fptt.state[p]["lam"], lm)  # kept
