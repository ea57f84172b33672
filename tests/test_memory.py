"""Memory of one update: bytes saved for backward, FPTT (K = T) vs BPTT.

docs/concepts/fptt.md: with ``K = T`` FPTT updates at every step and detaches the state,
so the autograd graph of one update - and the activations it saves - does not
depend on the sequence length T. BPTT keeps all T steps for its single update,
so its saved bytes grow linearly in T.

The bytes are measured with ``torch.autograd.graph.saved_tensors_hooks``: every
tensor autograd saves for backward is counted (``numel * element_size``) from the
end of one optimizer step to the next, i.e. over the forward of one update window
(the model steps, the loss and the FPTT regulariser).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fptt_ext
from fptt_ext.fptt import SequenceTrainer

B, N_IN, HIDDEN = 8, 2, 64
TS = {"fptt": (20, 100, 500), "bptt": (20, 100, 500, 1000)}  # FPTT at T = 1000 costs ~2 s more


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_IN, HIDDEN), fptt_ext.LTC(size=HIDDEN, init_hidden=True), nn.Linear(HIDDEN, 1))


def saved_bytes_per_update(method: str, T: int) -> list[int]:
    """Bytes saved for backward during each update window of one ``train_batch``."""
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    per_update, current = [], [0]

    def pack(t):
        current[0] += t.numel() * t.element_size()
        return t

    def at_step(optimizer, args, kwargs):  # the window's graph is complete when the optimizer steps
        per_update.append(current[0])
        current[0] = 0

    handle = opt.register_step_pre_hook(at_step)
    trainer = SequenceTrainer(model, opt, method=method, loss="regression_end")
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(T, B, N_IN, generator=g), torch.rand(B, 1, generator=g)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = trainer.train_batch(x, y)
    finally:
        handle.remove()
    assert result.updates == len(per_update) == (T if method == "fptt" else 1)
    return per_update


@pytest.fixture(scope="module")
def measured():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster and steadier on a busy 2-core machine
    try:
        return {(m, T): saved_bytes_per_update(m, T) for m, Ts in TS.items() for T in Ts}
    finally:
        torch.set_num_threads(threads)


def test_fptt_update_memory_is_independent_of_T(measured):
    ref = measured[("fptt", 20)]
    assert ref[0] > 0
    for T in TS["fptt"]:
        per_update = measured[("fptt", T)]
        # every update window saves exactly the same bytes, at any step and any T
        assert set(per_update) == set(ref), (T, sorted(set(per_update)), sorted(set(ref)))
        assert max(per_update) == max(ref)


def test_bptt_update_memory_grows_linearly_in_T(measured):
    per_step = {T: measured[("bptt", T)][0] / T for T in TS["bptt"]}
    for T in TS["bptt"]:
        assert per_step[T] == pytest.approx(per_step[1000], rel=0.01), per_step
    # at T = 500 BPTT's single update holds over a hundred times what one FPTT update
    # holds (whose bytes include the parameter-sized tensors of the regulariser)
    assert measured[("bptt", 500)][0] > 100 * max(measured[("fptt", 500)])
