"""Optuna samplers behind the ask/tell interface: TPE (single objective: the reward) and NSGA-II
(two objectives: accuracy up, latency down; the reward is ignored).

Each decision is a categorical parameter ``d<i>`` over its token indices. Only Optuna's public API is
used, so that an Optuna release cannot silently break resume:

* the study lives in a ``JournalStorage`` whose journal is kept in memory. The journal is Optuna's own
  persistence format (the text of a journal file), so ``state_dict`` returns it (compressed) and
  ``load_state_dict`` replays it: trials, trials still running, and what the sampler recorded in the
  study (NSGA-II's generations and parent populations) come back exactly;
* a sampler's random state is not in the study and Optuna has no public way to read or set it. So
  ``state_dict`` also starts a new sampler, seeded from (seed, asks so far, tells so far), and
  ``load_state_dict`` starts the same one: after a save, the original and a restored copy continue
  identically. Between saves one sampler serves every ask and keeps its caches (a fresh sampler per
  ask recomputes the search space over all trials: over 10x slower for NSGA-II at 500 evaluations).
"""

from __future__ import annotations

import json
import warnings
import zlib
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import TrialState

from mnas import MnasError
from mnas.search.strategies.base import BaseStrategy, Tokens, b64, unb64
from mnas.space.decisions import SearchSpace

_STUDY = "mnas"


class _MemoryJournal(BaseJournalBackend):
    """An Optuna journal file held in memory: one JSON line per log, as ``JournalFileBackend`` writes
    them. Reading parses the lines, so a study and its restored copy replay identical logs."""

    def __init__(self, text: str = "") -> None:
        self.lines = text.splitlines()

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines[log_number_from:]]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.lines.extend(json.dumps(log) for log in logs)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


class _OptunaStrategy(BaseStrategy):
    directions: list[str] = ["maximize"]

    distinct = False  # replace a repeated proposal by a new architecture (see _replace_repeat)

    def __init__(self, space: SearchSpace, seed: int = 0, **sampler_options: Any) -> None:
        super().__init__(space, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial on stderr
        self.sampler_options = sampler_options
        self.dists = {f"d{i}": CategoricalDistribution(list(range(c)))
                      for i, c in enumerate(space.cardinalities)}
        self._open(_MemoryJournal())
        optuna.create_study(storage=self.storage, study_name=_STUDY, directions=self.directions)
        self._reopen()
        self.pending: dict[Tokens, list[int | None]] = {}  # proposals not told yet -> their trial numbers
        self._results: dict[Tokens, list[float] | None] | None = None  # told architectures (see _known)
        self.repeats = 0

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _open(self, journal: _MemoryJournal) -> None:
        self.journal, self.storage = journal, JournalStorage(journal)

    def _reopen(self) -> None:
        """The study with a new sampler, seeded from the seed and the counts."""
        seed = int(np.random.SeedSequence([self.seed, self.n_asked, self.n_told]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.load_study(study_name=_STUDY, storage=self.storage, sampler=self._sampler(seed))

    def ask(self) -> Tokens:
        self.n_asked += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. TPE's notes on independent sampling
            trial = self.study.ask(fixed_distributions=self.dists)
        tokens = tuple(int(trial.params[f"d{i}"]) for i in range(len(self.dists)))
        if self.distinct and (tokens in self.pending or tokens in self._known()):
            return self._replace_repeat(trial.number, tokens)
        self.pending.setdefault(tokens, []).append(trial.number)
        return tokens

    def _known(self) -> dict[Tokens, list[float] | None]:
        """Every architecture told so far -> its values (None: failed), read from the study once and then
        kept up to date by tell()."""
        if self._results is None:
            self._results = {}
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
                tokens = tuple(int(t.params[f"d{i}"]) for i in range(len(self.dists)))
                self._results[tokens] = list(t.values) if t.state == TrialState.COMPLETE else None
        return self._results

    def _replace_repeat(self, number: int, tokens: Tokens) -> Tokens:
        """A repeated proposal gets the result it already has (a failure while it is still running), so
        the sampler learns it was proposed, and is replaced by an architecture never proposed, one decision
        away where one is left: the loop would only answer the repeat from its cache, and each extra
        sampler step grows with the number of trials."""
        known = self._known()
        values = known.get(tokens)
        if values is None:
            self.study.tell(number, state=TrialState.FAIL)
        else:
            self.study.tell(number, values)
        self.repeats += 1
        rng = np.random.default_rng([self.seed, self.n_asked, self.n_told, 1])
        used = known.keys() | self.pending.keys()
        cards = self.space.cardinalities
        for i in rng.permutation(len(cards)):
            for v in rng.permutation(cards[i]):
                cand = (*tokens[:i], int(v), *tokens[i + 1:])
                if cand not in used:
                    self.pending.setdefault(cand, []).append(None)  # not a study trial: added when told
                    return cand
        for _ in range(1000):
            cand = tuple(int(rng.integers(c)) for c in cards)
            if cand not in used:
                self.pending.setdefault(cand, []).append(None)
                return cand
        self.pending.setdefault(tokens, []).append(None)  # the space is used up: a repeat it is
        return tokens

    def _values(self, reward: float, objectives: dict | None) -> list[float]:
        return [float(reward)]

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        tokens = self._check(tokens)
        values = None if reward is None else self._values(reward, objectives)
        self.n_told += 1
        self.n_failed += values is None
        if self._results is not None:
            self._results[tokens] = values
        numbers = self.pending.get(tokens)
        number = numbers.pop(0) if numbers else None
        if numbers == []:
            del self.pending[tokens]
        if number is not None:
            if values is None:
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, values)
        else:  # a result the sampler did not propose (a replacement, a repeat): record it as a finished trial
            params = {f"d{i}": t for i, t in enumerate(tokens)}
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=self.dists, values=values,
                state=TrialState.FAIL if values is None else TrialState.COMPLETE))

    def state_dict(self) -> dict:
        self._reopen()  # what follows the save depends on the saved state only (see the module docstring)
        # compressed: the logs repeat themselves (~2 kB a trial as text, 25x less packed)
        return {**self._header(), "journal": b64(zlib.compress(self.journal.text().encode())),
                "pending": [[list(t), nums] for t, nums in self.pending.items()], "repeats": self.repeats}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        self.seed = d["seed"]  # the sampler's seed derives from it
        self._open(_MemoryJournal(zlib.decompress(unb64(d["journal"])).decode()))
        self._reopen()
        self.pending = {tuple(t): list(nums) for t, nums in d["pending"]}
        self._results, self.repeats = None, d.get("repeats", 0)

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "trials": len(self.study.get_trials(deepcopy=False)),
                "repeats_replaced": self.repeats}


class OptunaTPE(_OptunaStrategy):
    """TPE on the reward. ``multivariate`` models the decisions jointly; ``constant_liar`` treats
    proposals still waiting for a result as bad ones, so a batch of asks does not repeat itself;
    ``distinct`` replaces a proposal already made by a new neighbour of it (TPE alone re-proposed
    architectures it knew about 4 times for each new one on a 500-training synthetic benchmark)."""

    name = "optuna-tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, n_startup_trials: int = 10,
                 multivariate: bool = True, constant_liar: bool = True, distinct: bool = True) -> None:
        self.distinct = bool(distinct)
        super().__init__(space, seed, n_startup_trials=n_startup_trials, multivariate=multivariate,
                         constant_liar=constant_liar)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, **self.sampler_options)


class OptunaNSGA2(_OptunaStrategy):
    """NSGA-II on (accuracy, latency_ms): tell() needs ``objectives`` with both keys."""

    name = "optuna-nsga2"
    directions = ["maximize", "minimize"]

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20,
                 objectives: tuple[str, str] = ("accuracy", "latency_ms")) -> None:
        self.objective_keys = tuple(objectives)
        super().__init__(space, seed, population_size=population_size)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=seed, **self.sampler_options)

    def _values(self, reward: float, objectives: dict | None) -> list[float]:
        missing = [k for k in self.objective_keys if not objectives or objectives.get(k) is None]
        if missing:
            raise MnasError(f"optuna-nsga2 needs objectives {', '.join(self.objective_keys)} in tell(); "
                            f"missing {', '.join(missing)}")
        return [float(objectives[k]) for k in self.objective_keys]  # type: ignore[index]
