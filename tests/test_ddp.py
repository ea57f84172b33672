"""SequenceTrainer under DistributedDataParallel: 2 CPU processes, gloo, 127.0.0.1.

Each rank trains a DDP-wrapped LTC net with FPTT (K = T) on half of a fixed
batch (tests/_ddp_worker.py). DDP averages the gradients of the per-rank mean
losses, which is the gradient of the full-batch mean loss, so the weights, W_bar
and lam (grad_prev for "exact") must be identical on both ranks and equal to a
single-process run on the whole batch. The "exact" variant's second gradient
comes from ``backward()``, so DDP all-reduces it too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _ddp_worker as worker

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(worker.__file__).resolve()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(out)], env={**env, "RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=90)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # on failure, every rank's exit code, whether it wrote its results (a crash after that is
    # in the process group's teardown) and its log
    report = "\n".join(f"rank {r}: exit code {p.returncode}, results written: {(out / f'rank{r}.pt').exists()}\n"
                       f"{log[-3000:]}" for r, (p, log) in enumerate(zip(procs, logs)))
    for p in procs:
        assert p.returncode == 0, f"DDP worker failed:\n{report}"
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("variant", ["practical", "exact"])
def test_ranks_agree_and_match_single_process(ranks, variant):
    r0, r1 = ranks[0][variant], ranks[1][variant]
    threads = torch.get_num_threads()
    try:
        ref = worker.train(variant)  # no DDP, whole batch (sets one thread, like the workers)
    finally:
        torch.set_num_threads(threads)
    trace = "lam" if variant == "practical" else "grad_prev"
    assert set(r0["state"]) == set(ref["state"])
    for name, s0 in r0["state"].items():
        assert set(s0) == {"W", "W_bar", trace}
        for key, t0 in s0.items():
            torch.testing.assert_close(t0, r1["state"][name][key], rtol=0, atol=0, msg=f"{name}.{key} rank 0 != 1")
            torch.testing.assert_close(t0, ref["state"][name][key], rtol=0, atol=1e-10,
                                       msg=f"{name}.{key}: DDP != single process")
    # the training moved the weights, so the comparison above is not vacuous
    init = dict(worker.make_model().named_parameters())
    assert all(not torch.equal(s["W"], init[n]) for n, s in r0["state"].items())
    # each rank's loss is the mean over its half; their mean is the full-batch loss
    for l0, l1, lref in zip(r0["losses"], r1["losses"], ref["losses"]):
        assert l0 != l1
        assert (l0 + l1) / 2 == pytest.approx(lref, abs=1e-12)


def test_default_buffer_broadcast_is_refused(ranks):
    # With DDP's default forward_sync_buffers=True rank 0's neuron state (buffers)
    # would overwrite rank 1's at every forward; the ranks still agree with each
    # other, but the training silently differs from the single-process run.
    for r in ranks:
        assert "forward_sync_buffers=False" in r["error"]
