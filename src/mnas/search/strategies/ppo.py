"""The MnasNet/NASNet controller: an autoregressive 1-layer LSTM trained with PPO.

One token per decision: step i reads the embedding of token i-1 (a learned start vector at step 0)
and a per-decision softmax head picks token i. The paper's settings follow the NASNet appendix the MnasNet paper
points to (100 LSTM units, PPO lr 0.00035, entropy weight 1e-5, EMA reward baseline 0.95, weights
U(-0.1, 0.1), 20 architectures per update): the settings profile ``PAPER`` (strategy ``ppo-paper``), set for
~8000-trial searches. The default profile, ``SMALL_BUDGET``, is for a few hundred trainings: it never
proposes an architecture twice (docs/results/2026-11-27-ppo-small-budget-settings.md has the measurements).

Bookkeeping: ``ask`` keeps each proposal with the log-probability it was sampled with (PPO's "old"
policy), so results may arrive in any order. When ``batch_size`` successful results have arrived the
controller takes ``ppo_epochs`` gradient steps on the clipped objective with advantage
reward - baseline (optionally divided by a running standard deviation of the rewards, which makes
the learning rate independent of the reward's unit and of the reward preset), or centred ranks. With
``self_imitation`` K the K best results so far join every update's batch, their "old" log-probability
that of the current policy (so the clip starts from ratio 1). Failed trials are dropped from the batch: a
failure says nothing about accuracy, and a made-up reward would bias it.

With ``screen`` K and a latency oracle (``use_latency_oracle``, called by the loop), each proposal after
the first update is chosen among K new architectures sampled from the policy by the predictor's
latency-aware surrogate (``surrogate.Screen``: modelled accuracy times the latency term at the measured
latency, refit at every update); the policy still learns from the rewards of what it proposed, with the
log-probabilities they were sampled with. Without an oracle, or with results that carry no accuracy and
latency, it is plain PPO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

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
# Oh et al. 2018), so a good model found once keeps pulling the policy after its batch has passed; the
# surrogate picks each proposal among 50 policy samples when latency can be measured before training.
SMALL_BUDGET = replace(PAPER, lr=0.005, batch_size=10, ppo_epochs=2, advantage="rank", entropy_weight=0.003,
                       unique=True, self_imitation=5, screen=50)
PROFILES = {"small-budget": SMALL_BUDGET, "paper": PAPER}  # named settings; options override single fields


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
               heads: list[tuple[np.ndarray, np.ndarray]], skip: Visited | None = None) -> tuple[Tokens, float]:
        """One architecture and its log-probability under the policy. Plain numpy: sampling is one token
        at a time, where torch's per-call overhead would dominate (a roll-out is a few small matrix products).
        ``skip``: never choose a token whose subtree ``skip`` has used up, so the result is new."""
        start, w_ih, w_hh, bias = w
        x, h, c = start, np.zeros(w_hh.shape[1]), np.zeros(w_hh.shape[1])
        logp, out = 0.0, []
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
                p = p * [not skip.full((*out, t)) for t in range(len(z))]
            cdf = np.cumsum(p)
            t = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(z) - 1)
            logp += float(z[t] - lse)
            out.append(t)
            x = emb[i][t]
        return tuple(out), logp

    def sample_many(self, rng: np.random.Generator, w: list[np.ndarray], emb: list[np.ndarray],
                    heads: list[tuple[np.ndarray, np.ndarray]], k: int,
                    skip: Visited | None = None) -> dict[Tokens, float]:
        """Up to ``k`` distinct architectures and their log-probabilities, sampled side by side (one
        matrix product per step for all of them; ``skip`` as in ``sample``)."""
        start, w_ih, w_hh, bias = w
        n = w_hh.shape[1]
        x, h, c = np.tile(start, (k, 1)), np.zeros((k, n)), np.zeros((k, n))
        logp, out, rows = np.zeros(k), np.zeros((k, len(heads)), dtype=np.int64), np.arange(k)
        prefixes: list[Tokens] = [()] * k
        for i, (hw, hb) in enumerate(heads):
            g = x @ w_ih.T + h @ w_hh.T + bias
            c = _sigmoid(g[:, n:2 * n]) * c + _sigmoid(g[:, :n]) * np.tanh(g[:, 2 * n:3 * n])
            h = _sigmoid(g[:, 3 * n:]) * np.tanh(c)
            z = h @ hw.T + hb
            z = z - z.max(1, keepdims=True)
            lse = np.log(np.exp(z).sum(1))
            p = np.exp(z - lse[:, None])
            if skip is not None:
                p = p * skip.open_children(prefixes, z.shape[1])
            cdf = np.cumsum(p, 1)
            t = np.minimum((cdf <= (rng.random(k) * cdf[:, -1])[:, None]).sum(1), z.shape[1] - 1)
            logp += z[rows, t] - lse
            out[:, i] = t
            prefixes = [(*pre, int(v)) for pre, v in zip(prefixes, t)]
            x = emb[i][t]
        found: dict[Tokens, float] = {}
        for r in rows:
            found.setdefault(tuple(int(v) for v in out[r]), float(logp[r]))
        return found

    def evaluate(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (sum over decisions) of a [B, D] batch of token rows."""
        b = tokens.shape[0]
        x, state = self.start.expand(b, -1), None
        logp = torch.zeros(b)
        ent = torch.zeros(b)
        for i, head in enumerate(self.heads):
            state = self.cell(x, state)
            logits = torch.log_softmax(head(state[0]), dim=-1)
            logp = logp + logits.gather(1, tokens[:, i:i + 1]).squeeze(1)
            ent = ent - (logits.exp() * logits).sum(1)
            x = self.embed[i](tokens[:, i])
        return logp, ent


class PPOStrategy(BaseStrategy):
    name = "ppo"

    def __init__(self, space: SearchSpace, seed: int = 0, profile: str = "small-budget", **overrides: Any) -> None:
        """``profile``: "small-budget" (for a few hundred trainings) or "paper" (for ~8000); ``overrides``:
        any field of ``PPOSettings``. (``preset``, the old name of ``profile``, is read until the next
        release.)"""
        super().__init__(space, seed)
        if "preset" in overrides:
            profile = renamed({"preset": overrides.pop("preset")}, {"preset": "profile"}, "ppo")["profile"]
        if profile not in PROFILES:
            raise MnasError(f"ppo: profile {profile!r}: expected {' or '.join(PROFILES)}")
        self.profile = profile
        self.settings = st = replace(PROFILES[profile], **overrides)
        if st.batch_size < 1 or st.ppo_epochs < 1 or not 0 <= st.baseline_decay < 1 or st.lr <= 0 or st.clip <= 0:
            raise MnasError("ppo: need batch_size >= 1, ppo_epochs >= 1, 0 <= baseline_decay < 1, "
                            "lr > 0, clip > 0")
        if st.advantage not in ("baseline", "rank"):
            raise MnasError(f"ppo: advantage {st.advantage!r}: expected baseline (paper) or rank")
        self.visited = Visited(space.cardinalities)
        self.controller = Controller(space.cardinalities, st.hidden_size, st.embedding_size)
        self.controller.reset(st.init_range, torch.Generator().manual_seed(seed))
        self.rng = np.random.default_rng(seed)
        self._sync()
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=st.lr)
        self.pending: list[tuple[Tokens, float]] = []  # asked, not yet told: (tokens, old log-prob)
        self.ready: list[tuple[Tokens, float, float]] = []  # told: (tokens, old log-prob, reward)
        self.baseline: float | None = None
        self.reward_var: float | None = None
        self.updates = 0
        self.last: dict[str, float] = {}
        self.elite: list[tuple[float, Tokens]] = []  # the best results so far, replayed in each update
        self.latency_oracle: LatencyOracle | None = None  # use_latency_oracle: not part of the state
        self.screener = Screen(space.cardinalities, min(st.screen, PER_TRAINING)) if st.screen else None

    def use_latency_oracle(self, oracle: LatencyOracle | None) -> None:
        """``LatencyAware``: with an oracle, proposals are screened by latency (see the module's docstring)."""
        self.latency_oracle = oracle

    def ask(self) -> Tokens:
        self.n_asked += 1
        # without replacement: a repeat costs no training but teaches nothing (until all is seen)
        skip = self.visited if self.settings.unique and not self.visited.full(()) else None
        screen = self.screener
        if screen is not None and self.latency_oracle is not None and screen.fitted is not None and screen.usable():
            tokens, logp = self._screened_sample(skip)
        else:
            tokens, logp = self.controller.sample(self.rng, *self._np, skip=skip)
        self.visited.add(tokens)
        self.pending.append((tokens, logp))
        return tokens

    def _screened_sample(self, skip: Visited | None) -> tuple[Tokens, float]:
        """``screen`` new architectures sampled from the policy; the surrogate picks the one to train."""
        sampled = self.controller.sample_many(self.rng, *self._np, self.settings.screen, skip)
        cands = {t: lp for t, lp in sampled.items() if t not in self.visited.seen}
        if not cands:
            return self.controller.sample(self.rng, *self._np, skip=skip)
        chosen = self.screener.choose(list(cands), 1, self.latency_oracle)  # type: ignore[union-attr,arg-type]
        tokens = chosen[0] if chosen else next(iter(cands))
        return tokens, cands[tokens]

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        tokens = self._check(tokens)
        self.n_told += 1
        self.visited.add(tokens)  # e.g. a warm start: evaluated, so not worth proposing
        idx = next((i for i, (t, _) in enumerate(self.pending) if t == tokens), None)
        if idx is not None:
            old_logp = self.pending.pop(idx)[1]
        else:  # a result the controller did not propose (a warm start): its current probability
            with torch.no_grad():
                old_logp = float(self.controller.evaluate(torch.tensor([tokens]))[0][0])
        if reward is None or not math.isfinite(reward):
            self.n_failed += 1
            return
        self.ready.append((tokens, old_logp, float(reward)))
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

    def _update(self, batch: list[tuple[Tokens, float, float]]) -> None:
        # A 100-unit LSTM over a batch of 20 is far too small for intra-op threads; on a busy
        # machine their spin-waiting made each update ~50x slower (measured), so run it on one.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._ppo_step(batch)
        finally:
            torch.set_num_threads(threads)

    def _ppo_step(self, batch: list[tuple[Tokens, float, float]]) -> None:
        st = self.settings
        if self.elite:  # self-imitation: the best results so far join the batch, at the current policy
            have = {t for t, _, _ in batch}
            extra = [(t, r) for r, t in self.elite if t not in have]
            if extra:
                with torch.no_grad():
                    lp = self.controller.evaluate(torch.tensor([t for t, _ in extra]))[0].tolist()
                batch = batch + [(t, float(p), r) for (t, r), p in zip(extra, lp)]
        rewards = np.array([r for _, _, r in batch], dtype=np.float64)
        if self.baseline is None:
            self.baseline = float(rewards.mean())
            self.reward_var = float(rewards.var())
        if st.advantage == "rank":
            # centred ranks within the batch, unit variance: invariant to any monotone transform of
            # the reward, so a heavy tail of broken models cannot drown the differences at the top
            ranks = rewards.argsort().argsort().astype(np.float64)
            adv = ranks - ranks.mean()
            adv = adv / max(adv.std(), 1e-12)
        else:
            adv = rewards - self.baseline
            if st.normalize:
                adv = adv / math.sqrt(max(self.reward_var or 0.0, 1e-12))
        for r in rewards:  # EMA over rewards, one step each, after the advantages are taken
            dev = r - self.baseline
            self.baseline = float(self.baseline + (1 - st.baseline_decay) * dev)
            self.reward_var = float(st.baseline_decay * (self.reward_var or 0.0)
                                    + (1 - st.baseline_decay) * dev * dev)
        tokens = torch.tensor([t for t, _, _ in batch])
        old = torch.tensor([lp for _, lp, _ in batch])
        adv_t = torch.tensor(adv, dtype=torch.float32)
        for _ in range(st.ppo_epochs):
            logp, ent = self.controller.evaluate(tokens)
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
        return {**self._header(),
                "rng": self.rng.bit_generator.state,
                "controller": {k: _enc(v) for k, v in self.controller.state_dict().items()},
                "optimizer": {"state": [[k, {n: _enc(v) for n, v in s.items()}] for k, s in opt["state"].items()],
                              "param_groups": opt["param_groups"]},
                "pending": [[list(t), lp] for t, lp in self.pending],
                "ready": [[list(t), lp, r] for t, lp, r in self.ready],
                "visited": sorted(list(t) for t in self.visited.seen),
                "baseline": self.baseline, "reward_var": self.reward_var, "updates": self.updates,
                "last": self.last, "elite": [[r, list(t)] for r, t in self.elite],
                **({"screen": self.screener.state_dict()} if self.screener is not None else {})}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        self.rng.bit_generator.state = d["rng"]
        self.controller.load_state_dict({k: _dec(v) for k, v in d["controller"].items()})
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in d["optimizer"]["param_groups"]]
        self.optimizer.load_state_dict({"state": {int(k): {n: _dec(v) for n, v in s.items()}
                                                  for k, s in d["optimizer"]["state"]},
                                        "param_groups": groups})
        self.pending = [(tuple(t), float(lp)) for t, lp in d["pending"]]
        self.visited = Visited(self.space.cardinalities)
        for t in d["visited"]:
            self.visited.add(tuple(t))
        self.ready = [(tuple(t), float(lp), float(r)) for t, lp, r in d["ready"]]
        self.baseline, self.reward_var, self.updates = d["baseline"], d["reward_var"], d["updates"]
        self.last = dict(d["last"])
        self.elite = [(float(r), tuple(t)) for r, t in d.get("elite", [])]
        if self.screener is not None and "screen" in d:  # a state saved before the screen existed has none
            self.screener.load_state_dict(d["screen"])
        self._sync()


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
