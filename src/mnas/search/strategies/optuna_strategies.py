"""Optuna samplers behind the ask/tell interface: TPE (single objective: the reward) and NSGA-II
(two objectives: accuracy up, latency down; the reward is ignored).

Each decision is a categorical parameter ``d<i>`` over its token indices. Save/restore replays the
trials (parameters, values, states and the sampler's bookkeeping attributes) into a fresh study
with a freshly seeded sampler, then sets every random state the sampler holds to the saved one, so
the next proposals are the ones the original study would have made.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import TrialState

from mnas import MnasError
from mnas.search.strategies.base import BaseStrategy, Tokens, np_rng_state, set_np_rng_state
from mnas.space.decisions import SearchSpace

_STATES = {s.name: s for s in TrialState}


class _OptunaStrategy(BaseStrategy):
    directions: list[str] = ["maximize"]

    def __init__(self, space: SearchSpace, seed: int = 0, **sampler_options: Any) -> None:
        super().__init__(space, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sampler_options = sampler_options
        self.dists = {f"d{i}": CategoricalDistribution(list(range(c)))
                      for i, c in enumerate(space.cardinalities)}
        self.study = self._new_study()
        self.pending: dict[Tokens, list[int]] = {}

    def _sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _new_study(self) -> optuna.Study:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.create_study(directions=self.directions, sampler=self._sampler())

    def ask(self) -> Tokens:
        self.n_asked += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(fixed_distributions=self.dists)
        tokens = tuple(int(trial.params[f"d{i}"]) for i in range(len(self.dists)))
        self.pending.setdefault(tokens, []).append(trial.number)
        return tokens

    def _values(self, reward: float, objectives: dict | None) -> list[float]:
        return [float(reward)]

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        tokens = self._check(tokens)
        self.n_told += 1
        values = None if reward is None else self._values(reward, objectives)
        self.n_failed += values is None
        numbers = self.pending.get(tokens)
        if numbers:
            number = numbers.pop(0)
            if not numbers:
                del self.pending[tokens]
            if values is None:
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, values)
        else:  # a result the sampler did not propose: record it as a finished trial
            params = {f"d{i}": t for i, t in enumerate(tokens)}
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=self.dists, values=values,
                state=TrialState.FAIL if values is None else TrialState.COMPLETE))

    def _rng_states(self) -> list[LazyRandomState]:
        found: list[LazyRandomState] = []
        seen: set[int] = set()

        def walk(obj: Any, depth: int) -> None:
            if id(obj) in seen or depth > 4:
                return
            seen.add(id(obj))
            if isinstance(obj, LazyRandomState):
                found.append(obj)
                return
            if type(obj).__module__.startswith("optuna") and hasattr(obj, "__dict__"):
                for key in sorted(vars(obj)):
                    walk(vars(obj)[key], depth + 1)

        walk(self.study.sampler, 0)
        return found

    def state_dict(self) -> dict:
        trials = []
        for t in self.study.get_trials(deepcopy=False):
            trials.append({"number": t.number, "state": t.state.name, "params": dict(t.params),
                           "values": t.values, "system_attrs": dict(t.system_attrs),
                           "user_attrs": dict(t.user_attrs)})
        return {**self._header(), "options": self.sampler_options, "trials": trials,
                "study_system_attrs": dict(self.study._storage.get_study_system_attrs(self.study._study_id)),
                "pending": [[list(t), nums] for t, nums in self.pending.items()],
                "rng": [np_rng_state(r.rng) for r in self._rng_states()]}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        self.study = self._new_study()
        storage, sid = self.study._storage, self.study._study_id
        for key, value in d["study_system_attrs"].items():
            storage.set_study_system_attr(sid, key, value)
        for t in d["trials"]:
            state = _STATES[t["state"]]
            frozen = optuna.trial.create_trial(
                state=state, params=t["params"], distributions=self.dists,
                values=t["values"] if state == TrialState.COMPLETE else None,
                system_attrs=t["system_attrs"], user_attrs=t["user_attrs"])
            self.study.add_trial(frozen)
        self.pending = {tuple(t): list(nums) for t, nums in d["pending"]}
        states = self._rng_states()
        if len(states) != len(d["rng"]):
            raise MnasError(f"{self.name}: saved state holds {len(d['rng'])} random states, "
                            f"the sampler has {len(states)} (different optuna version?)")
        for r, s in zip(states, d["rng"]):
            set_np_rng_state(r.rng, s)

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "trials": len(self.study.trials)}


class OptunaTPE(_OptunaStrategy):
    """Multivariate TPE; pending trials are handled with the constant-liar heuristic so that a
    batch of asks before any tell does not return the same point over and over."""

    name = "optuna-tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, n_startup_trials: int = 10,
                 multivariate: bool = True, constant_liar: bool = True) -> None:
        super().__init__(space, seed, n_startup_trials=n_startup_trials, multivariate=multivariate,
                         constant_liar=constant_liar)

    def _sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=self.seed, **self.sampler_options)


class OptunaNSGA2(_OptunaStrategy):
    """NSGA-II on (accuracy, latency_ms): tell() needs ``objectives`` with both keys."""

    name = "optuna-nsga2"
    directions = ["maximize", "minimize"]

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20,
                 objectives: tuple[str, str] = ("accuracy", "latency_ms")) -> None:
        self.objective_keys = tuple(objectives)
        super().__init__(space, seed, population_size=population_size)

    def _sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=self.seed, **self.sampler_options)

    def _values(self, reward: float, objectives: dict | None) -> list[float]:
        missing = [k for k in self.objective_keys if not objectives or objectives.get(k) is None]
        if missing:
            raise MnasError(f"optuna-nsga2 needs objectives {', '.join(self.objective_keys)} in tell(); "
                            f"missing {', '.join(missing)}")
        return [float(objectives[k]) for k in self.objective_keys]  # type: ignore[index]
