import json
import math
import random
import subprocess
import sys

import pytest

from mnas import MnasError
from mnas.search.strategies import STRATEGIES, make_strategy
from mnas.search.strategies.base import LatencyAware, give_latency_oracle
from mnas.space import MnasNetSpace
from mnas.space.nb201 import Nb201Space

SMALL = {"ppo": {"batch_size": 4, "hidden_size": 16, "embedding_size": 8, "lr": 0.01, "ppo_epochs": 2},
         "ppo-paper": {"batch_size": 4, "hidden_size": 16, "embedding_size": 8},
         "ppo-screened": {"batch_size": 4, "hidden_size": 16, "embedding_size": 8, "screen": 6},
         "predictor": {"initial": 4, "batch_size": 2, "candidates": 20, "parents": 3},
         "evolution": {"population_size": 6, "sample_size": 3},
         "evolution-latency": {"population_size": 6, "sample_size": 3, "screen": 5},
         "screen-random": {"initial": 4, "batch_size": 2, "candidates": 20, "parents": 3},
         "optuna-tpe": {"n_startup_trials": 5},
         "optuna-nsga2": {"population_size": 6}}


def _result(tokens):
    acc = 0.5 + sum(tokens) / (10 * len(tokens) + 1)
    lat = 1.0 + sum((i % 3) * t for i, t in enumerate(tokens))
    return acc * (lat / 5) ** -0.07, {"accuracy": acc, "latency_ms": lat}


def _drive(s, n, rng, batch=3, fail_every=7):
    """ask a batch, tell it back shuffled, with an occasional failure and a repeated tell."""
    out = []
    for step in range(n):
        asked = [s.ask() for _ in range(batch)]
        out += asked
        rng.shuffle(asked)
        for i, t in enumerate(asked):
            if (step * batch + i) % fail_every == 0:
                s.tell(t, None)
            else:
                r, obj = _result(t)
                s.tell(t, r, obj)
        r, obj = _result(asked[0])
        s.tell(asked[0], r, obj)  # the loop re-tells a cached duplicate
    return out


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("space", [Nb201Space(), MnasNetSpace.load()], ids=["nb201", "mnasnet"])
def test_conformance(name, space):
    s = make_strategy(name, space, seed=7, **SMALL.get(name, {}))
    proposals = _drive(s, 6, random.Random(0))
    for t in proposals:
        assert isinstance(t, tuple) and space.check_tokens(t) == t
    space.decode(proposals[-1])
    pending = [s.ask() for _ in range(2)]  # saved with proposals outstanding
    state = json.loads(json.dumps(s.state_dict()))
    twin = make_strategy(name, space, seed=123, **SMALL.get(name, {}))
    twin.load_state_dict(state)
    for strat in (s, twin):
        for t in pending:
            r, obj = _result(t)
            strat.tell(t, r, obj)
    a = _drive(s, 5, random.Random(1))
    b = _drive(twin, 5, random.Random(1))
    assert a == b
    assert isinstance(s.diagnostics(), dict)
    json.dumps(s.diagnostics())


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_same_seed_same_proposals_and_tells_of_unproposed_tokens(name):
    space = Nb201Space()
    a, b = (make_strategy(name, space, seed=3, **SMALL.get(name, {})) for _ in range(2))
    assert _drive(a, 3, random.Random(0)) == _drive(b, 3, random.Random(0))
    r, obj = _result((1, 2, 3, 4, 0, 1))
    a.tell((1, 2, 3, 4, 0, 1), r, obj)  # a warm start the strategy never proposed
    a.ask()


def test_ppo_presets_and_their_errors():
    from mnas.search.strategies.ppo import PAPER, SMALL_BUDGET

    space = Nb201Space()
    assert make_strategy("ppo", space).settings == SMALL_BUDGET
    paper = make_strategy("ppo-paper", space, batch_size=8)
    assert paper.settings.lr == PAPER.lr == 0.00035 and paper.settings.batch_size == 8
    assert not paper.settings.unique
    with pytest.raises(MnasError):
        make_strategy("ppo", space, advantage="median")
    with pytest.raises(MnasError, match="profile"):
        make_strategy("ppo", space, profile="huge")
    with pytest.warns(FutureWarning, match="'preset' is deprecated, write 'profile'"):
        assert make_strategy("ppo", space, preset="paper").settings.lr == PAPER.lr


def test_ppo_never_proposes_twice_until_the_space_is_used_up():
    """A 64-cell space and a policy pushed hard towards one cell: every proposal is new until all 64 are
    seen; then it samples again (with repeats) instead of failing."""
    space = Nb201Space(ops=("none", "skip_connect"))
    s = make_strategy("ppo", space, seed=0, lr=0.05, batch_size=4, hidden_size=16, embedding_size=8)
    asked = []
    for _ in range(64):
        t = s.ask()
        asked.append(t)
        s.tell(t, 1.0 if t == (1,) * 6 else 0.0)
    assert len(set(asked)) == 64
    s.tell(s.ask(), 0.5)


def test_tpe_replaces_a_repeated_proposal_by_a_new_neighbour_and_resumes_exactly():
    """On a 64-cell space TPE, told that one cell is far the best, re-proposes it; each repeat is replaced by
    a cell never proposed (one decision away while one is left), so 64 asks cover the space; a copy
    restored mid-way, with a replacement still waiting, then proposes what the original does."""
    space = Nb201Space(ops=("none", "skip_connect"))

    def value(t):
        return 1.0 if t == (1,) * 6 else 0.1 * sum(t)

    s = make_strategy("optuna-tpe", space, seed=0, n_startup_trials=4)
    asked = []
    for _ in range(40):
        asked.append(s.ask())
        s.tell(asked[-1], value(asked[-1]))
    waiting = s.ask()
    twin = make_strategy("optuna-tpe", space, seed=0, n_startup_trials=4)
    twin.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert twin.diagnostics() == s.diagnostics() and s.diagnostics()["repeats_replaced"] > 0
    rest = {}
    for name, strat in (("original", s), ("restored", twin)):
        strat.tell(waiting, value(waiting))
        rest[name] = []
        for _ in range(23):
            rest[name].append(strat.ask())
            strat.tell(rest[name][-1], value(rest[name][-1]))
    assert rest["original"] == rest["restored"]
    assert len({*asked, waiting, *rest["original"]}) == 64
    plain = make_strategy("optuna-tpe", space, seed=0, n_startup_trials=4, distinct=False)
    seen = []
    for _ in range(64):
        seen.append(plain.ask())
        plain.tell(seen[-1], value(seen[-1]))
    assert len(set(seen)) < 64  # what the option is for


def test_ppo_self_imitation_keeps_pushing_towards_the_best_result_so_far():
    """The best result of the first batch joins every later update (at the current policy), so its
    probability keeps rising while later batches hold only worse models; without replay it does not."""
    import torch

    space = Nb201Space()
    gains = {}
    for k in (0, 3):
        s = make_strategy("ppo", space, seed=0, batch_size=4, hidden_size=16, embedding_size=8, lr=0.02,
                          self_imitation=k)
        first = [s.ask() for _ in range(4)]
        for i, t in enumerate(first):
            s.tell(t, 0.9 if i == 0 else 0.5)
        before = float(s.controller.evaluate(torch.tensor([first[0]]))[0][0].detach())
        for _ in range(3):
            for i, t in enumerate([s.ask() for _ in range(4)]):
                s.tell(t, 0.3 + 0.05 * i)
        gains[k] = float(s.controller.evaluate(torch.tensor([first[0]]))[0][0].detach()) - before
        twin = make_strategy("ppo", space, seed=0, batch_size=4, hidden_size=16, embedding_size=8, lr=0.02,
                             self_imitation=k)
        twin.load_state_dict(json.loads(json.dumps(s.state_dict())))
        assert twin.elite == s.elite and len(s.elite) == min(k, 16)
    assert gains[3] > gains[0] + 1.0  # measured: 2.9 against 1.1 nats


def test_ppo_skips_what_it_was_told_without_proposing():
    space = Nb201Space(ops=("none", "skip_connect"))
    s = make_strategy("ppo", space, seed=1, hidden_size=16, embedding_size=8)
    told = {tuple(int(b) for b in f"{i:06b}") for i in range(0, 64, 2)}  # every cell ending in 0
    for t in told:
        s.tell(t, 0.5)
    assert all(s.ask() not in told for _ in range(32))


def test_state_of_another_strategy_or_space_is_refused():
    nb = Nb201Space()
    state = make_strategy("random", nb).state_dict()
    with pytest.raises(MnasError):
        make_strategy("evolution", nb).load_state_dict(state)
    with pytest.raises(MnasError):
        make_strategy("random", MnasNetSpace.load()).load_state_dict(state)


def test_unknown_strategy_or_option_is_a_user_error():
    with pytest.raises(MnasError, match="unknown strategy"):
        make_strategy("hill-climbing", Nb201Space())
    with pytest.raises(MnasError, match="ppo"):
        make_strategy("ppo", Nb201Space(), learning_rate=1)


def test_nsga2_needs_objectives():
    s = make_strategy("optuna-nsga2", Nb201Space())
    with pytest.raises(MnasError, match="latency_ms"):
        s.tell(s.ask(), 0.5, {"accuracy": 0.5})


def test_ppo_learns_a_simple_preference():
    """All-zeros is best: after a few hundred samples the controller prefers token 0 clearly. (Measured on
    the policy: its proposals are new by construction, so late ones must move away from the best.)"""
    import torch

    space = Nb201Space()
    s = make_strategy("ppo", space, seed=0, lr=0.01, batch_size=10, ppo_epochs=2, normalize=True)
    for _ in range(300):
        t = s.ask()
        s.tell(t, 1.0 - sum(x > 0 for x in t) / 6)
    with torch.no_grad():
        logp = float(s.controller.evaluate(torch.tensor([(0,) * 6]))[0][0])
    assert math.exp(logp / 6) > 0.5  # per decision (geometric mean); uniform would be 0.2
    assert s.diagnostics()["entropy"] < s.diagnostics()["max_entropy"]


def test_evolution_mutates_one_decision_of_a_tournament_winner():
    space = Nb201Space()
    s = make_strategy("evolution", space, seed=0, population_size=4, sample_size=4)
    for t in [(0,) * 6, (1,) * 6, (2,) * 6, (4,) * 6]:
        s.tell(t, float(t[0]))
    for _ in range(20):
        child = s.ask()
        assert sum(a != b for a, b in zip(child, (4,) * 6)) == 1


@pytest.mark.parametrize("name", ["optuna-tpe", "optuna-nsga2"])
def test_optuna_resume_is_exact_across_generations(name):
    """NSGA-II over several generations (population 4), TPE past its startup trials; a trial of the first
    generation is told only after the next generation's parents were chosen, so the restored study must
    hold what the sampler recorded (NSGA-II's cached parents), not only the trials."""
    space = Nb201Space()
    opts = {"optuna-tpe": {"n_startup_trials": 4}, "optuna-nsga2": {"population_size": 4}}[name]
    s = make_strategy(name, space, seed=5, **opts)
    late = s.ask()
    _drive(s, 8, random.Random(2), batch=2)
    s.tell(late, 0.99, {"accuracy": 0.99, "latency_ms": 0.5})  # dominates all: an elite if considered
    waiting = s.ask()
    state = json.loads(json.dumps(s.state_dict()))
    twin = make_strategy(name, space, seed=0, **opts)
    twin.load_state_dict(state)
    assert twin.diagnostics() == s.diagnostics()
    for strat in (s, twin):
        r, obj = _result(waiting)
        strat.tell(waiting, r, obj)
    assert _drive(s, 6, random.Random(3), batch=2) == _drive(twin, 6, random.Random(3), batch=2)


def test_registry_imports_no_strategy_until_one_is_built():
    code = ("import sys; from mnas.search.strategies import STRATEGIES, make_strategy; "
            "import mnas.search.bench; from mnas.space.nb201 import Nb201Space; "
            "assert 'optuna' not in sys.modules and 'torch' not in sys.modules, 'imported early'; "
            "assert {'random', 'evolution', 'ppo', 'ppo-paper', 'ppo-screened', 'predictor', 'optuna-tpe', "
            "'optuna-nsga2'} <= set(STRATEGIES); "
            "make_strategy('random', Nb201Space()); assert 'optuna' not in sys.modules; "
            "make_strategy('optuna-tpe', Nb201Space()); assert 'optuna' in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_only_a_latency_aware_strategy_is_given_the_oracle():
    def oracle(cands):
        return [1.0] * len(cands)

    space = Nb201Space()
    ppo, rnd = make_strategy("ppo", space, seed=0), make_strategy("random", space, seed=0)
    assert isinstance(ppo, LatencyAware) and isinstance(make_strategy("predictor", space), LatencyAware)
    assert not isinstance(rnd, LatencyAware)
    assert give_latency_oracle(ppo, oracle) and ppo.latency_oracle is oracle
    assert not give_latency_oracle(rnd, oracle)

    class OldPlugin:  # how a strategy asked for the oracle before LatencyAware
        name, latency_oracle = "old", None

    old = OldPlugin()
    with pytest.warns(DeprecationWarning, match="use_latency_oracle"):
        assert give_latency_oracle(old, oracle)
    assert old.latency_oracle is oracle
