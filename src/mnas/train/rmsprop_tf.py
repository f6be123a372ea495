"""RMSProp with the semantics of TensorFlow 1's ``tf.train.RMSPropOptimizer``, which MnasNet trained with.

It differs from ``torch.optim.RMSprop`` in three ways, each of which changes the first steps a lot:

* the mean-square slot starts at 1, not 0 (so early steps are about lr * g, not lr * sign(g));
* epsilon is added *inside* the square root: g / sqrt(ms + eps);
* the learning rate is multiplied in before the momentum accumulation, so a schedule change only
  scales new contributions and the buffer keeps what was already accumulated.

Per parameter, with g the gradient (+ weight_decay * w, i.e. an L2 term in the loss, as the reference):

    ms  = decay * ms + (1 - decay) * g^2
    mom = momentum * mom + lr * g / sqrt(ms + eps)
    w   = w - mom
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class RMSpropTF(Optimizer):
    def __init__(self, params, lr: float = 0.016, decay: float = 0.9, momentum: float = 0.9, eps: float = 1e-3,
                 weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or not 0 <= decay < 1 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"bad RMSpropTF settings: lr={lr} decay={decay} momentum={momentum} eps={eps} "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum = group["lr"], group["decay"], group["momentum"]
            eps, wd = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                g = p.grad
                if wd:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                ms = state["square_avg"]
                ms.mul_(decay).addcmul_(g, g, value=1.0 - decay)
                update = g / ms.add(eps).sqrt_()
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).add_(update, alpha=lr)
                    p.sub_(buf)
                else:
                    p.sub_(update, alpha=lr)
        return loss
