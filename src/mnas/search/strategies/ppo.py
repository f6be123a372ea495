"""The MnasNet/NASNet controller: an autoregressive 1-layer LSTM trained with PPO.

One token per decision: step i reads the embedding of token i-1 (a learned start vector at step 0)
and a per-decision softmax head picks token i. The paper's settings follow the NASNet appendix the MnasNet paper
points to (100 LSTM units, PPO lr 0.00035, entropy weight 1e-5, EMA reward baseline 0.95, weights
U(-0.1, 0.1), 20 architectures per update): the settings profile ``PAPER`` (strategy ``ppo-paper``), set for
~8000-trial searches. The default profile, ``SMALL_BUDGET``, is for a few hundred trainings: it never
proposes an architecture twice (docs/results/2026-11-27-ppo-small-budget-settings.md has the measurements).

Bookkeeping: ``ask`` keeps each proposal with the log-probability of how it was drawn (PPO's "old"
policy), so results may arrive in any order. When ``batch_size`` successful results have arrived the
controller takes ``ppo_epochs`` gradient steps on the clipped objective with advantage
reward - baseline (optionally divided by a running standard deviation of the rewards, which makes
the learning rate independent of the reward's unit and of the reward preset), or centred ranks within
the batch. Failed trials are dropped from the batch: a failure says nothing about accuracy, and a made-up
reward would bias it.

What makes it a policy gradient of what it trained: the ratio's denominator is the probability of the
trained architecture under the distribution it was really drawn from. With ``unique`` the sampler masks
every token whose subtree is used up and renormalises over the others, so the stored log-probability is
that of the masked distribution, and the update recomputes the same masked distribution (the masked tokens
are stored with the proposal) under the new weights. With ``self_imitation`` K the K best results so far
join every update as a separate, deliberately off-policy term (self-imitation learning, Oh et al. 2018):
their "old" log-probability that of the current policy (ratio 1 at the start), their advantage only where
they beat the batch (max(A, 0)); the batch's own advantages are computed from the batch alone, so the
policy-gradient term is the same with or without it.

The screen (strategy ``ppo-screened``, or ``screen`` K on ``ppo``): with a latency oracle
(``use_latency_oracle``, called by the loop) and results that carry accuracy and latency, each proposal
after the first update is chosen by the predictor's latency-aware surrogate (``surrogate.Screen``) among K
roll-outs of the policy. The trained architecture's probability under that procedure is intractable (it
depends on the surrogate's ranking of all K roll-outs), and its probability under the policy, which
``ppo`` used until 2026-12, is not its behaviour probability: the importance ratio was wrong and the
gradient leaned toward what the surrogate likes. The two ways out were an estimate of the behaviour
probability (a Monte-Carlo estimate needs many more surrogate runs and latency queries per proposal, and
importance weights pi/q of a sharp screen have a huge variance) or to treat the K roll-outs as the action.
We do the latter: the K roll-outs are drawn independently from the policy, and the surrogate's pick is a
function of them and of things the policy does not control (the surrogate's fit, the latencies), so
log P(roll-outs) = the sum of their log-probabilities is the exact behaviour log-probability, and the
PPO ratio of the sums gives the exact policy gradient of the expected reward of what the screened search
trains (the score-function identity, with the surrogate as part of the environment). The price is a
noisier signal per training (every roll-out is credited with the pick's reward). Until the screen has
results to rank by (the first update), roll-outs are drawn one at a time until one's latency can be
measured, and the behaviour log-probability is again that of all of them. Without an oracle the screened
controller is plain PPO.

Naming: ``ppo`` is the controller alone, as in the paper; ``ppo-screened`` has ``screen`` 50 (what the
small-budget profile had before 2026-12). The benchmark reports them as separate strategies, so it says
what the surrogate adds to the controller. A state saved when ``ppo`` screened by default resumes as the
controller alone, with a warning.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from mnas import MnasError
from mnas.schema import old_name, renamed
from mnas.search.strategies.base import BaseStrategy, LatencyOracle, Tokens, b64, unb64
from mnas.search.strategies.surrogate import PER_TRAINING, Screen
from mnas.space.decisions import SearchSpace


@dataclass(frozen=True)
class PPOSettings:
    """The controller's and PPO's settings; the defaults are the paper's (``PAPER``)."""

    lr: float = 0.00035
    entropy_weight: float = 1e-5
    baseline_decay: float = 0.95
    init_range: float = 0.1
    batch_size: int = 20
    hidden_size: int = 100
    embedding_size: int = 100
    clip: float = 0.2
    ppo_epochs: int = 1
    normalize: bool = False
    max_grad_norm: float | None = None
    advantage: str = "baseline"
    unique: bool = False
    self_imitation: int = 0
    screen: int = 0


PAPER = PPOSettings()
# For a few hundred trainings (docs/results/2026-11-27-ppo-small-budget-settings.md has the measurements):
# never propose an architecture twice, so a peaked policy searches around its mode instead of repeating it; updates every 10
# results with rank advantages, two epochs and a larger step, so 20-50 updates can move the policy; a larger
# entropy bonus against early collapse; the 5 best results so far replayed in every update (self-imitation,
# Oh et al. 2018), so a good model found once keeps pulling the policy after its batch has passed.
# (ppo-screened adds the screen: the surrogate picks each proposal among SCREEN policy roll-outs when latency
# can be measured before training.)
SMALL_BUDGET = replace(PAPER, lr=0.005, batch_size=10, ppo_epochs=2, advantage="rank", entropy_weight=0.003,
                       unique=True, self_imitation=5)
PROFILES = {"small-budget": SMALL_BUDGET, "paper": PAPER}  # named settings; options override single fields
SCREEN = 50  # ppo-screened's roll-outs per proposal (the small-budget profile's screen before it had its own name)
# 2: proposals keep the roll-outs they were drawn from; version 1 (no key) was saved when ppo screened by default
STATE_VERSION = 2
Closed = tuple[tuple[int, int], ...]  # (decision, token) pairs the sampler could not choose (used-up subtrees)


class Controller(nn.Module):
    def __init__(self, cardinalities: tuple[int, ...], hidden_size: int, embedding_size: int) -> None:
        super().__init__()
        self.cards = cardinalities
        self.start = nn.Parameter(torch.zeros(embedding_size))
        self.embed = nn.ModuleList(nn.Embedding(c, embedding_size) for c in cardinalities)
        self.cell = nn.LSTMCell(embedding_size, hidden_size)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, c) for c in cardinalities)

    def reset(self, init_range: float, generator: torch.Generator) -> None:
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)

    def numpy_weights(self) -> list[np.ndarray]:
        """The parameters as float64 arrays for the sampler (refreshed after every update)."""
        c = self.cell
        return [p.detach().double().numpy().copy() for p in
                (self.start, c.weight_ih, c.weight_hh, c.bias_ih + c.bias_hh)]

    def sample(self, rng: np.random.Generator, w: list[np.ndarray], emb: list[np.ndarray],
               heads: list[tuple[np.ndarray, np.ndarray]],
               skip: Visited | None = None) -> tuple[Tokens, float, Closed]:
        """One architecture, the log-probability it was drawn with and the tokens it could not be drawn
        with. Plain numpy: sampling is one token at a time, where torch's per-call overhead would dominate
        (a roll-out is a few small matrix products). ``skip``: never choose a token whose subtree ``skip``
        has used up, so the result is new; the log-probability is then that of the masked (renormalised)
        distribution, the one the architecture was really drawn from, and the masked tokens are returned
        so that the update can compute the same distribution under the new weights."""
        start, w_ih, w_hh, bias = w
        x, h, c = start, np.zeros(w_hh.shape[1]), np.zeros(w_hh.shape[1])
        logp, out, closed = 0.0, [], []
        for i, (hw, hb) in enumerate(heads):
            g = w_ih @ x + w_hh @ h + bias
            n = len(h)
            ig, fg = _sigmoid(g[:n]), _sigmoid(g[n:2 * n])
            gg, og = np.tanh(g[2 * n:3 * n]), _sigmoid(g[3 * n:])
            c = fg * c + ig * gg
            h = og * np.tanh(c)
            z = hw @ h + hb
            z = z - z.max()
            lse = math.log(np.exp(z).sum())
            p = np.exp(z - lse)
            if skip is not None:
                shut = [skip.full((*out, t)) for t in range(len(z))]
                closed += [(i, t) for t, full in enumerate(shut) if full]
                p = p * np.logical_not(shut)
            cdf = np.cumsum(p)
            t = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(z) - 1)
            logp += float(z[t] - lse) - (math.log(cdf[-1]) if skip is not None else 0.0)
            out.append(t)
            x = emb[i][t]
        return tuple(out), logp, tuple(closed)

    def draw_many(self, rng: np.random.Generator, w: list[np.ndarray], emb: list[np.ndarray],
                  heads: list[tuple[np.ndarray, np.ndarray]], k: int,
                  skip: Visited | None = None) -> list[tuple[Tokens, float, Closed]]:
        """``k`` independent draws as ``sample`` makes them (repeats included), side by side: one matrix
        product per step for all of them."""
        start, w_ih, w_hh, bias = w
        n = w_hh.shape[1]
        x, h, c = np.tile(start, (k, 1)), np.zeros((k, n)), np.zeros((k, n))
        logp, out, rows = np.zeros(k), np.zeros((k, len(heads)), dtype=np.int64), np.arange(k)
        prefixes: list[Tokens] = [()] * k
        closed: list[list[tuple[int, int]]] = [[] for _ in range(k)]
        for i, (hw, hb) in enumerate(heads):
            g = x @ w_ih.T + h @ w_hh.T + bias
            c = _sigmoid(g[:, n:2 * n]) * c + _sigmoid(g[:, :n]) * np.tanh(g[:, 2 * n:3 * n])
            h = _sigmoid(g[:, 3 * n:]) * np.tanh(c)
            z = h @ hw.T + hb
            z = z - z.max(1, keepdims=True)
            lse = np.log(np.exp(z).sum(1))
            p = np.exp(z - lse[:, None])
            if skip is not None:
                mask = skip.open_children(prefixes, z.shape[1])
                for r, shut in zip(*np.nonzero(mask == 0)):
                    closed[r].append((i, int(shut)))
                p = p * mask
            cdf = np.cumsum(p, 1)
            t = np.minimum((cdf <= (rng.random(k) * cdf[:, -1])[:, None]).sum(1), z.shape[1] - 1)
            logp += z[rows, t] - lse - (np.log(cdf[:, -1]) if skip is not None else 0.0)
            out[:, i] = t
            prefixes = [(*pre, int(v)) for pre, v in zip(prefixes, t)]
            x = emb[i][t]
        return [(tuple(int(v) for v in out[r]), float(logp[r]), tuple(closed[r])) for r in rows]

    def evaluate(self, tokens: torch.Tensor, closed: list[Closed] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (sum over decisions) of a [B, D] batch of token rows. ``closed``
        (one per row): the tokens the sampler could not choose; the log-probability is then that of the
        distribution renormalised over the others, as ``sample`` drew it. The entropy is the policy's."""
        b = tokens.shape[0]
        shut: list[torch.Tensor] | None = None
        if closed is not None and any(closed):
            shut = [torch.zeros(b, c, dtype=torch.bool) for c in self.cards]
            for r, pairs in enumerate(closed):
                for i, t in pairs:
                    shut[i][r, t] = True
        x, state = self.start.expand(b, -1), None
        logp = torch.zeros(b)
        ent = torch.zeros(b)
        for i, head in enumerate(self.heads):
            state = self.cell(x, state)
            raw = head(state[0])
            logits = torch.log_softmax(raw, dim=-1)
            drawn = logits if shut is None else torch.log_softmax(raw.masked_fill(shut[i], -math.inf), dim=-1)
            logp = logp + drawn.gather(1, tokens[:, i:i + 1]).squeeze(1)
            ent = ent - (logits.exp() * logits).sum(1)
            x = self.embed[i](tokens[:, i])
        return logp, ent


class Draw(NamedTuple):
    """One roll-out of the sampler: the architecture and the tokens it could not choose on the way."""

    tokens: Tokens
    closed: Closed = ()


@dataclass
class Proposal:
    """What the controller trained and how it came to train it: the roll-outs it drew (one, or the
    ``screen`` candidates the surrogate chose among) and the log-probability of drawing exactly those under
    the policy of the time (PPO's "old" policy)."""

    tokens: Tokens
    logp: float
    draws: tuple[Draw, ...]
    reward: float = math.nan

    def to_json(self, told: bool) -> list:
        out: list = [list(self.tokens), self.logp] + ([self.reward] if told else [])
        if self.draws != (Draw(self.tokens),):
            out.append([[list(d.tokens), [list(c) for c in d.closed]] for d in self.draws])
        return out

    @classmethod
    def from_json(cls, row: list, told: bool) -> Proposal:
        tokens, logp = tuple(row[0]), float(row[1])
        reward = float(row[2]) if told else math.nan
        rest = row[3 if told else 2:]
        draws = tuple(Draw(tuple(t), tuple((int(i), int(c)) for i, c in closed)) for t, closed in rest[0]) \
            if rest else (Draw(tokens),)  # states saved before the draws were kept: one unmasked roll-out
        return cls(tokens, logp, draws, reward)


class PPOStrategy(BaseStrategy):
    name = "ppo"
    default_screen = 0  # ppo is the controller alone; ScreenedPPO (ppo-screened) sets it

    def __init__(self, space: SearchSpace, seed: int = 0, profile: str = "small-budget", **overrides: Any) -> None:
        """``profile``: "small-budget" (for a few hundred trainings) or "paper" (for ~8000); ``overrides``:
        any field of ``PPOSettings``. (``preset``, the old name of ``profile``, is read until the next
        release.)"""
        super().__init__(space, seed)
        if "preset" in overrides:
            profile = renamed({"preset": overrides.pop("preset")}, {"preset": "profile"}, "ppo")["profile"]
        if profile not in PROFILES:
            raise MnasError(f"{self.name}: profile {profile!r}: expected {' or '.join(PROFILES)}")
        self.profile = profile
        self.settings = st = replace(PROFILES[profile], **{"screen": self.default_screen, **overrides})
        if st.batch_size < 1 or st.ppo_epochs < 1 or not 0 <= st.baseline_decay < 1 or st.lr <= 0 or st.clip <= 0 \
                or st.screen < 0:
            raise MnasError(f"{self.name}: need batch_size >= 1, ppo_epochs >= 1, 0 <= baseline_decay < 1, "
                            "lr > 0, clip > 0, screen >= 0")
        if st.advantage not in ("baseline", "rank"):
            raise MnasError(f"{self.name}: advantage {st.advantage!r}: expected baseline (paper) or rank")
        self.visited = Visited(space.cardinalities)
        self.controller = Controller(space.cardinalities, st.hidden_size, st.embedding_size)
        self.controller.reset(st.init_range, torch.Generator().manual_seed(seed))
        self.rng = np.random.default_rng(seed)
        self._sync()
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=st.lr)
        self.pending: list[Proposal] = []  # asked, not yet told
        self.ready: list[Proposal] = []  # told, waiting for a full batch
        self.baseline: float | None = None
        self.reward_var: float | None = None
        self.updates = 0
        self.last: dict[str, float] = {}
        self.elite: list[tuple[float, Tokens]] = []  # the best results so far, replayed in each update
        self.latency_oracle: LatencyOracle | None = None  # use_latency_oracle: not part of the state
        self.screener = Screen(space.cardinalities, min(st.screen, PER_TRAINING)) if st.screen else None

    def use_latency_oracle(self, oracle: LatencyOracle | None) -> None:
        """``LatencyAware``: with an oracle and ``screen``, proposals are screened by latency (see the module's
        docstring)."""
        self.latency_oracle = oracle

    def ask(self) -> Tokens:
        self.n_asked += 1
        # without replacement: a repeat costs no training but teaches nothing (until all is seen)
        skip = self.visited if self.settings.unique and not self.visited.full(()) else None
        screen = self.screener
        if screen is not None and self.latency_oracle is not None and screen.fitted is not None and screen.usable():
            proposal = self._screened_sample(skip)
        elif screen is not None and self.latency_oracle is not None:
            proposal = self._measurable_sample(skip)
        else:
            tokens, logp, closed = self.controller.sample(self.rng, *self._np, skip=skip)
            proposal = Proposal(tokens, logp, (Draw(tokens, closed),))
        self.visited.add(proposal.tokens)
        self.pending.append(proposal)
        return proposal.tokens

    def _screened_sample(self, skip: Visited | None) -> Proposal:
        """``screen`` roll-outs of the policy; the surrogate picks the one to train among the new ones. The
        behaviour log-probability is that of all the roll-outs (the surrogate's pick is a function of them
        and of what the policy does not control), so the update is the policy gradient of the expected
        reward of the screened choice (the module's docstring says why)."""
        draws = self.controller.draw_many(self.rng, *self._np, self.settings.screen, skip)
        logp = sum(lp for _, lp, _ in draws)
        cands = [t for t in dict.fromkeys(t for t, _, _ in draws) if t not in self.visited.seen]
        rolled = tuple(Draw(t, closed) for t, _, closed in draws)
        if not cands:  # every roll-out was seen before: one more, trained as it is
            tokens, lp, closed = self.controller.sample(self.rng, *self._np, skip=skip)
            return Proposal(tokens, logp + lp, (*rolled, Draw(tokens, closed)))
        chosen = self.screener.choose(cands, 1, self.latency_oracle)  # type: ignore[union-attr,arg-type]
        return Proposal(chosen[0] if chosen else cands[0], logp, rolled)

    def _measurable_sample(self, skip: Visited | None) -> Proposal:
        """Before the screen can rank (nothing to learn from yet): roll-outs one at a time, each measured, until
        one's latency can be measured (at most the screen's queries per training), as the other screened
        strategies start. The
        behaviour log-probability is that of all the roll-outs it took: when to stop is the oracle's doing."""
        draws, logp = [], 0.0
        for _ in range(self.screener.per_training):  # type: ignore[union-attr]
            tokens, lp, closed = self.controller.sample(self.rng, *self._np, skip=skip)
            draws.append(Draw(tokens, closed))
            logp += lp
            self.screener.measure([tokens], self.latency_oracle)  # type: ignore[union-attr,arg-type]
            if self.screener.measured[tokens] is not None:  # type: ignore[union-attr]
                break
        return Proposal(tokens, logp, tuple(draws))

    def _current_logp(self, tokens: list[Tokens]) -> list[float]:
        with torch.no_grad():
            return self.controller.evaluate(torch.tensor(tokens))[0].tolist()

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        tokens = self._check(tokens)
        self.n_told += 1
        self.visited.add(tokens)  # e.g. a warm start: evaluated, so not worth proposing
        idx = next((i for i, p in enumerate(self.pending) if p.tokens == tokens), None)
        if idx is not None:
            proposal = self.pending.pop(idx)
        else:  # a result the controller did not propose (a warm start): its current probability
            proposal = Proposal(tokens, self._current_logp([tokens])[0], (Draw(tokens),))
        if reward is None or not math.isfinite(reward):
            self.n_failed += 1
            return
        proposal.reward = float(reward)
        self.ready.append(proposal)
        if self.screener is not None:
            self.screener.tell(tokens, float(reward), objectives)
        if self.settings.self_imitation:
            best = {t: r for r, t in self.elite}
            best[tokens] = max(float(reward), best.get(tokens, -math.inf))
            self.elite = sorted(((r, t) for t, r in best.items()), reverse=True)[:self.settings.self_imitation]
        n = self.settings.batch_size
        if len(self.ready) >= n:
            batch, self.ready = self.ready[:n], self.ready[n:]
            self._update(batch)

    def _update(self, batch: list[Proposal]) -> None:
        # A 100-unit LSTM over a batch of 20 is far too small for intra-op threads; on a busy
        # machine their spin-waiting made each update ~50x slower (measured), so run it on one.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._ppo_step(batch)
        finally:
            torch.set_num_threads(threads)

    def _advantages(self, rewards: np.ndarray, elite: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch's advantages from the batch alone (the policy-gradient term), and the replayed best
        results' (self-imitation: only where they beat the batch, max(A, 0) as in Oh et al. 2018)."""
        st = self.settings
        if st.advantage == "rank":
            # centred ranks within the batch, unit variance: invariant to any monotone transform of
            # the reward, so a heavy tail of broken models cannot drown the differences at the top
            adv = _centred_ranks(rewards)
            both = _centred_ranks(np.concatenate([rewards, elite]))
            return adv, np.maximum(both[len(rewards):], 0.0)
        scale = math.sqrt(max(self.reward_var or 0.0, 1e-12)) if st.normalize else 1.0
        base = float(self.baseline)  # type: ignore[arg-type]
        return (rewards - base) / scale, np.maximum(elite - base, 0.0) / scale

    def _ppo_step(self, batch: list[Proposal]) -> None:
        st = self.settings
        have = {p.tokens for p in batch}
        extra = [(t, r) for r, t in self.elite if t not in have]
        # self-imitation: the best results so far join the update, their "old" policy the current one
        replay = [Proposal(t, lp, (Draw(t),), r) for (t, r), lp in
                  zip(extra, self._current_logp([t for t, _ in extra]) if extra else [])]
        rewards = np.array([p.reward for p in batch], dtype=np.float64)
        if self.baseline is None:
            self.baseline = float(rewards.mean())
            self.reward_var = float(rewards.var())
        adv, elite_adv = self._advantages(rewards, np.array([p.reward for p in replay], dtype=np.float64))
        for r in rewards:  # EMA over the batch's rewards, one step each, after the advantages are taken
            dev = r - self.baseline
            self.baseline = float(self.baseline + (1 - st.baseline_decay) * dev)
            self.reward_var = float(st.baseline_decay * (self.reward_var or 0.0)
                                    + (1 - st.baseline_decay) * dev * dev)
        entries = batch + replay
        draws = [(k, d) for k, p in enumerate(entries) for d in p.draws]
        tokens = torch.tensor([d.tokens for _, d in draws])
        closed = [d.closed for _, d in draws]
        group = torch.tensor([k for k, _ in draws])
        old = torch.tensor([p.logp for p in entries], dtype=torch.float32)
        adv_t = torch.tensor(np.concatenate([adv, elite_adv]), dtype=torch.float32)
        for _ in range(st.ppo_epochs):
            row_logp, ent = self.controller.evaluate(tokens, closed)
            logp = torch.zeros(len(entries)).index_add(0, group, row_logp)  # of all the roll-outs behind each
            ratio = torch.exp(logp - old)
            surrogate = torch.min(ratio * adv_t, ratio.clamp(1 - st.clip, 1 + st.clip) * adv_t)
            loss = -surrogate.mean() - st.entropy_weight * ent.mean()
            self.optimizer.zero_grad()
            loss.backward()
            if st.max_grad_norm:
                nn.utils.clip_grad_norm_(self.controller.parameters(), st.max_grad_norm)
            self.optimizer.step()
        self.updates += 1
        if self.screener is not None and self.screener.usable():
            self.screener.refit()  # the surrogate learns when the policy does
        self._sync()
        self.last = {"loss": float(loss.detach()), "entropy": float(ent.detach().mean()),
                     "batch_reward": float(rewards.mean())}

    def _sync(self) -> None:
        ctl = self.controller
        self._np = (ctl.numpy_weights(), [e.weight.detach().double().numpy().copy() for e in ctl.embed],
                    [(hd.weight.detach().double().numpy().copy(), hd.bias.detach().double().numpy().copy())
                     for hd in ctl.heads])

    def policy_entropy(self) -> float:
        """Entropy of the first decision plus the sampled-path entropies of a greedy roll-out:
        cheap, deterministic and comparable over time (nats; log(size) means uniform)."""
        with torch.no_grad():
            x, state, ent = self.controller.start.unsqueeze(0), None, 0.0
            for i, head in enumerate(self.controller.heads):
                state = self.controller.cell(x, state)
                logits = torch.log_softmax(head(state[0]), dim=-1)
                ent -= float((logits.exp() * logits).sum())
                x = self.controller.embed[i](logits.argmax(1))
        return ent

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "updates": self.updates, "entropy": self.policy_entropy(),
                "max_entropy": sum(math.log(c) for c in self.space.cardinalities),
                "baseline": self.baseline, **{f"last_{k}": v for k, v in self.last.items()},
                **({"latency_queries": self.screener.queries} if self.screener is not None else {})}

    def state_dict(self) -> dict:
        opt = self.optimizer.state_dict()
        return {**self._header(), "version": STATE_VERSION,
                "rng": self.rng.bit_generator.state,
                "controller": {k: _enc(v) for k, v in self.controller.state_dict().items()},
                "optimizer": {"state": [[k, {n: _enc(v) for n, v in s.items()}] for k, s in opt["state"].items()],
                              "param_groups": opt["param_groups"]},
                "pending": [p.to_json(told=False) for p in self.pending],
                "ready": [p.to_json(told=True) for p in self.ready],
                "visited": sorted(list(t) for t in self.visited.seen),
                "baseline": self.baseline, "reward_var": self.reward_var, "updates": self.updates,
                "last": self.last, "elite": [[r, list(t)] for r, t in self.elite],
                **({"screen": self.screener.state_dict()} if self.screener is not None else {})}

    def _check_state(self, d: dict) -> None:
        # the screened controller was strategy "ppo" before it had its own name: its states load here
        super()._check_state({**d, "strategy": self.name} if d.get("strategy") == "ppo" else d)

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        if d.get("version", 1) < STATE_VERSION:
            self._warn_old_state(d)
        self._load_counts(d["counts"])
        self.rng.bit_generator.state = d["rng"]
        self.controller.load_state_dict({k: _dec(v) for k, v in d["controller"].items()})
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in d["optimizer"]["param_groups"]]
        self.optimizer.load_state_dict({"state": {int(k): {n: _dec(v) for n, v in s.items()}
                                                  for k, s in d["optimizer"]["state"]},
                                        "param_groups": groups})
        self.pending = [Proposal.from_json(row, told=False) for row in d["pending"]]
        self.visited = Visited(self.space.cardinalities)
        for t in d["visited"]:
            self.visited.add(tuple(t))
        self.ready = [Proposal.from_json(row, told=True) for row in d["ready"]]
        self.baseline, self.reward_var, self.updates = d["baseline"], d["reward_var"], d["updates"]
        self.last = dict(d["last"])
        self.elite = [(float(r), tuple(t)) for r, t in d.get("elite", [])]
        if self.screener is not None and "screen" in d:  # a state saved before the screen existed has none
            self.screener.load_state_dict(d["screen"])
        self._sync()

    def _warn_old_state(self, d: dict) -> None:
        """A state saved before version 2 (mnas 0.x): ``ppo`` screened its proposals by default then."""
        if "screen" in d and self.screener is None:
            warnings.warn(f"{self.name}: this experiment's strategy state was saved when ppo screened its "
                          "proposals with the surrogate by default; ppo is now the controller alone, so the "
                          "search goes on unscreened (for a screened search, start one with strategy "
                          "ppo-screened)", UserWarning, stacklevel=3)
        elif self.screener is not None and (d["pending"] or d["ready"]):
            warnings.warn(f"{self.name}: this experiment's strategy state was saved before the screened update "
                          "was corrected; the proposals it had outstanding are learned from with the "
                          "probabilities they were stored with, the later ones exactly", UserWarning,
                          stacklevel=3)


class ScreenedPPO(PPOStrategy):
    """The controller with the latency-aware screen on (``screen`` policy roll-outs per proposal, default
    50): strategy ``ppo-screened``. Without a latency oracle it is ``ppo``."""

    name = "ppo-screened"
    default_screen = SCREEN

    def __init__(self, space: SearchSpace, seed: int = 0, profile: str = "small-budget", **overrides: Any) -> None:
        super().__init__(space, seed, profile, **overrides)
        if not self.settings.screen:
            raise MnasError("ppo-screened: screen must be >= 1 (screen=0 is strategy ppo)")


class Visited:
    """The architectures proposed or told so far, and how many lie under every prefix: a prefix is
    used up when that count reaches the size of its subtree."""

    def __init__(self, cardinalities: tuple[int, ...]) -> None:
        self.subtree = [math.prod(cardinalities[k:]) for k in range(len(cardinalities) + 1)]
        self.seen: set[Tokens] = set()
        self.count: dict[Tokens, int] = {}

    def add(self, tokens: Tokens) -> None:
        if tokens not in self.seen:
            self.seen.add(tokens)
            for k in range(len(tokens) + 1):
                self.count[tokens[:k]] = self.count.get(tokens[:k], 0) + 1

    def open_children(self, prefixes: list[Tokens], n: int) -> np.ndarray:
        """[len(prefixes), n]: 1 where the child token's subtree is not used up, else 0."""
        mask = np.ones((len(prefixes), n))
        whole = self.subtree[len(prefixes[0]) + 1] if prefixes else 0
        for r, pre in enumerate(prefixes):
            if self.count.get(pre, 0) >= whole:  # else no child can be full (fast path: nothing seen below)
                for t in range(n):
                    if self.count.get((*pre, t), 0) >= whole:
                        mask[r, t] = 0.0
        return mask

    def full(self, prefix: Tokens) -> bool:
        return self.count.get(prefix, 0) >= self.subtree[len(prefix)]


def paper_ppo(space: SearchSpace, seed: int = 0, **overrides: Any) -> PPOStrategy:
    """The paper's controller and settings (``PAPER``), for searches of thousands of trainings."""
    return PPOStrategy(space, seed, profile="paper", **overrides)


def _centred_ranks(x: np.ndarray) -> np.ndarray:
    ranks = x.argsort().argsort().astype(np.float64)
    adv = ranks - ranks.mean()
    return adv / max(adv.std(), 1e-12)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _enc(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": b64(t.numpy().tobytes())}
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"dtype", "shape", "data"}:
        arr = np.frombuffer(unb64(v["data"]), dtype=np.dtype(v["dtype"])).reshape(v["shape"]).copy()
        return torch.from_numpy(arr)
    return v


def __getattr__(name: str):
    return old_name(__name__, name, {"PRESETS": "PROFILES"}, globals())
