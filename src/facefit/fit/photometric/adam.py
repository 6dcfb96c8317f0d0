"""Adam for the photometric refinement, without `torch.optim`'s start-up cost.

`torch.optim.Adam`'s constructor imports ``torch._dynamo`` (about 1.2 s per process on one
core here), more than a single photo's whole refinement takes at its coarse level. This is
the same update (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015; as
`torch.optim.Adam` computes it without weight decay or AMSGrad: ``lerp`` for the first
moment, bias corrections on the step size and on the second moment's square root), with the
part of its interface the refinement uses: ``param_groups`` (dicts with ``"params"`` and
``"lr"``) and `Adam.step`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch


class Adam:
    """Adam over parameter groups; parameters whose ``grad`` is None are left as they are.

    Args:
        params: tensors (one group) or dicts with ``"params"`` and optionally ``"lr"``.
        lr: step size of groups without their own.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Sequence[dict[str, Any]],
                 lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        items = list(params)
        groups = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = [
            {"params": list(g["params"]), "lr": float(g.get("lr", lr))} for g in groups]
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient (all of them at once with
        torch's ``_foreach`` kernels: the same arithmetic, one call per operation instead of
        one per parameter)."""
        b1, b2 = self.betas
        params, grads, ms, vs, step_sizes, corrections = [], [], [], [], [], []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state.get(p)
                if st is None:
                    st = self.state[p] = {"step": 0, "m": torch.zeros_like(p),
                                          "v": torch.zeros_like(p)}
                st["step"] += 1
                t = st["step"]
                params.append(p)
                grads.append(p.grad)
                ms.append(st["m"])
                vs.append(st["v"])
                step_sizes.append(-group["lr"] / (1.0 - b1**t))
                corrections.append((1.0 - b2**t) ** 0.5)
        if not params:
            return
        torch._foreach_lerp_(ms, grads, 1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, corrections)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, ms, denom, step_sizes)
