"""PPO's update is the policy gradient of what it trained, whatever the settings: on a space of nine
architectures the expected reward under the distribution the trained architectures were really drawn from
is computed exactly, and many proposals' update must point the same way as its gradient."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch

from mnas.search.strategies import make_strategy
from mnas.search.strategies.ppo import Visited
from mnas.space.decisions import Decision, SearchSpace


class Tiny(SearchSpace):
    name = "tiny"
    decisions = (Decision("a", (0, 1, 2)), Decision("b", (0, 1, 2)))


TINY = Tiny()
ARCHS = list(itertools.product(range(3), range(3)))
REWARD = dict(zip(ARCHS, [0.2, 0.9, 0.4, 0.1, 0.5, 0.8, 0.3, 0.6, 0.7]))
SMALL = {"hidden_size": 4, "embedding_size": 4, "ppo_epochs": 1, "entropy_weight": 0.0,
         "advantage": "baseline", "self_imitation": 0}


UNMEASURABLE = {(0, 0), (0, 2), (1, 0), (1, 2), (2, 0), (2, 2)}


class StubScreen:
    """A perfect surrogate (it ranks by the reward itself), so that what the screen trains can be enumerated:
    where the surrogate agrees with the reward, an update that credits the pick alone leans furthest.
    ``ready`` False: the screen has nothing to rank by yet, and four cells cannot be measured."""

    queries, partial, per_training = 0, False, 3

    def __init__(self, ready: bool) -> None:
        self.fitted = (0, 0) if ready else None
        self.measured: dict = {}

    def usable(self, minimum: int = 2) -> bool:
        return self.fitted is not None

    def measure(self, tokens, oracle) -> None:
        self.measured.update(zip(tokens, oracle(tokens)))

    def choose(self, pool, n, oracle):
        return sorted(pool, key=REWARD.get, reverse=True)[:n]

    def tell(self, *args) -> None:
        pass

    def refit(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}


def _policy(s) -> dict:
    """pi(a) and pi(b | a) of the controller, from its log-probabilities of the nine architectures."""
    logp = s.controller.evaluate(torch.tensor(ARCHS))[0]
    joint = dict(zip(ARCHS, logp.exp()))
    first = {a: sum(joint[(a, b)] for b in range(3)) for a in range(3)}
    return {x: (first[x[0]], joint[x] / first[x[0]]) for x in ARCHS}


def _drawn(s, seen: set) -> dict:
    """The distribution the sampler draws from: the policy, with ``unique`` renormalised over the tokens
    whose subtree is not used up by ``seen``."""
    pol = _policy(s)
    if not s.settings.unique or not seen:
        return {x: pol[x][0] * pol[x][1] for x in ARCHS}
    open_a = [a for a in range(3) if any((a, b) not in seen for b in range(3))]
    za = sum(pol[(a, 0)][0] for a in open_a)
    out = {}
    for x in ARCHS:
        if x[0] in open_a and x not in seen:
            zb = sum(pol[(x[0], b)][1] for b in range(3) if (x[0], b) not in seen)
            out[x] = pol[x][0] / za * pol[x][1] / zb
        else:
            out[x] = pol[x][0] * 0.0
    return out


def _trained(s, seen: set, k: int, ready: bool) -> dict:
    """The distribution of the trained architecture: the drawn one; with the screen the stub's pick among
    ``k`` independent draws, or before it is ready the first measurable one of up to ``k`` draws."""
    mu = _drawn(s, seen)
    if not k:
        return mu
    if not ready:
        u = sum(mu[x] for x in UNMEASURABLE)  # a draw that cannot be measured: draw again
        return {x: mu[x] * (u ** (k - 1) if x in UNMEASURABLE else sum(u ** j for j in range(k))) for x in ARCHS}
    q = {x: mu[x] * 0.0 for x in ARCHS}
    for draws in itertools.product(ARCHS, repeat=k):
        pick = max(set(draws), key=REWARD.get)
        q[pick] = q[pick] + math.prod(mu[d] for d in draws)
    return q


def _one_update(settings: dict, seen: set, n: int, screen: int, ready: bool = True):
    s = make_strategy("ppo", TINY, seed=0, batch_size=n, screen=screen, **SMALL, **settings)
    s.optimizer = torch.optim.SGD(s.controller.parameters(), lr=1e-3)  # the step is the estimate itself
    if screen:
        s.screener = StubScreen(ready)
        s.use_latency_oracle(lambda ts: [None if t in UNMEASURABLE else 1.0 for t in ts])
    params = list(s.controller.parameters())
    expected = sum(q * REWARD[x] for x, q in _trained(s, seen, screen, ready).items())
    grads = torch.autograd.grad(expected, params, allow_unused=True)  # the last embedding feeds nothing
    truth = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])
    before = torch.cat([p.detach().flatten() for p in params])
    asked, stored = [], []
    for _ in range(n):
        s.visited = Visited(TINY.cardinalities)  # the same distribution for every proposal
        for t in seen:
            s.visited.add(t)
        if screen:
            s.screener.measured.clear()  # every proposal measures afresh
        asked.append(s.ask())
    stored = [(tuple(row[0]), row[1]) for row in s.state_dict()["pending"]]
    for t in asked:
        s.tell(t, REWARD[t])
    step = torch.cat([p.detach().flatten() for p in params]) - before
    return s, seen, truth, step, stored


@pytest.mark.parametrize("settings,seen,screen,ready", [
    ({"unique": False}, set(), 0, True),  # the paper's controller: plain sampling
    ({"unique": True}, {(0, 0), (0, 1), (2, 2)}, 0, True),  # without replacement: the sampler masks what was seen
    ({"unique": False}, set(), 3, True),  # the screened controller: the surrogate picks among 3 roll-outs
    ({"unique": False}, set(), 3, False),  # before the screen can rank: the first measurable of 3 roll-outs
], ids=["plain", "unique", "screened", "measurable-first"])
def test_the_update_is_the_policy_gradient_of_what_was_trained(settings, seen, screen, ready):
    s, seen, truth, step, stored = _one_update(settings, seen, 3000, screen, ready)
    cosine = float(step @ truth / (step.norm() * truth.norm()))
    # 3000 proposals: above 0.998 here; crediting the trained roll-out alone: 0.58 screened, 0.985 measurable-first
    assert cosine > 0.99, cosine
    if not screen:  # the stored behaviour probability is the sampler's: the frequency it drew each with
        freq = {t: sum(u == t for u, _ in stored) / len(stored) for t, _ in stored}
        for t, logp in stored:
            assert math.exp(logp) == pytest.approx(freq[t], abs=0.03)
            assert t not in seen
