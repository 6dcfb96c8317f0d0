"""facefit's Adam takes the steps `torch.optim.Adam` takes."""

from __future__ import annotations

import torch

from facefit.fit.photometric.adam import Adam


def _run(make, steps: int = 30) -> list[torch.Tensor]:
    torch.manual_seed(0)
    a = torch.randn(40, 3, requires_grad=True)
    b = torch.randn(7, requires_grad=True)
    c = torch.randn(2, requires_grad=True)  # never gets a gradient
    target = torch.randn(40, 3)
    opt = make([{"params": [a], "lr": 0.05}, {"params": [b, c], "lr": 0.2}])
    for k in range(steps):
        for g, base in zip(opt.param_groups, (0.05, 0.2), strict=True):
            g["lr"] = base * (1.0 - k / steps)  # the refinement's schedule changes lr
        for q in (a, b, c):
            q.grad = None
        loss = ((a - target) ** 2).sum() + (b**4).sum() + (a.sum() * b[0]) ** 2
        loss.backward()
        opt.step()
    return [a.detach(), b.detach(), c.detach()]


def test_steps_equal_torch_adam() -> None:
    ours = _run(Adam)
    ref = _run(lambda groups: torch.optim.Adam(groups, foreach=True))
    for x, y in zip(ours, ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    torch.randn(40, 3), torch.randn(7)
    assert torch.equal(ours[2], torch.randn(2))  # no gradient: untouched
