"""Fuzzing (hypothesis) what users and networks send: architecture strings to the CLI, query strings and
model files to a real agent. Whatever comes in: no traceback, exit 0 or 2, HTTP 200 or 4xx, and the agent
alive after each request. Plus the parser's caps, which keep a short string from asking for a huge network."""

from __future__ import annotations

import time

import pytest
from agent_helpers import (QUERY, big_input_model, call, external_data_model, running_agent, tiling_model)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mnas import MnasError
from mnas.cli import main
from mnas.latency.agent.wire import QUERY_SETTINGS, settings_from_query
from mnas.model.export import export, prepare
from mnas.space import zoo

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])
WEIRD = st.sampled_from([-1, 0, 2, 3, 11, 33, 4097, 10**5, 10**9])


def usually(valid, weird=WEIRD):
    """Mostly ``valid`` values, so networks get built, and now and then a weird one."""
    return st.integers(0, 7).flatmap(lambda n: weird if n == 0 else valid)


@st.composite
def block_strings(draw, width: int) -> tuple[str, int]:
    op = draw(usually(st.sampled_from(["ir", "ds", "cv"]), st.sampled_from(["cn", "x", ""])))
    out = draw(usually(st.sampled_from([8, 16, 24, 40, width, 4096])))
    fields = {"r": draw(usually(st.integers(1, 4))), "k": draw(usually(st.sampled_from([3, 5, 7, 15]))),
              "s": draw(usually(st.sampled_from([1, 2]))), "e": 1 if op == "ds" else draw(usually(st.sampled_from([1, 3, 6, 16]))),
              "i": draw(usually(st.just(width))), "o": out}
    parts = [op, *(f"{k}{v}" for k, v in fields.items())]
    parts += draw(st.lists(st.sampled_from(["se0.25", "se2", "senan", "noskip", "poolskip", "q7", "r1", "k"]),
                           max_size=2))
    return "_".join(draw(st.permutations(parts)) if draw(st.integers(0, 9)) == 0 else parts), out


@st.composite
def arch_strings(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=80))
    stem = draw(usually(st.sampled_from([8, 16, 32])))
    blocks, width = [], stem
    for _ in range(draw(st.integers(0, 4))):
        text, width = draw(block_strings(width))
        blocks.append(text)
    stride = draw(usually(st.sampled_from(["", "", "s1", "s2"]), st.sampled_from(["s0", "s3", "s", "x1"])))
    return ":".join([f"stem{stem}{stride}", *blocks, f"head{draw(usually(st.sampled_from([32, 1280])))}"])


@settings(FUZZ, max_examples=40)
@given(text=arch_strings(), multiplier=st.sampled_from(["1.0", "0.5", "3", "1000", "0", "-1", "nan"]))
def test_arch_show_never_tracebacks(text, multiplier, capsys):
    code = main(["arch", "show", text, "--width-multiplier", multiplier, "--json"])
    out, err = capsys.readouterr()
    event(f"exit {code}")  # --hypothesis-show-statistics: how many built a network
    assert code in (0, 2), err
    assert "Traceback" not in err and (code == 0 or err.startswith("error: "))


def test_the_parser_caps_sizes_and_huge_networks_show_quickly(capsys):
    for text, why in [("stem32:ir_r100000_k3_s1_e6_i32_o32:head1280", "repeats 100000 is over the maximum of 32"),
                      ("stem32:ir_r1_k3_s1_e6_i32_o99999:head1280", "output width 99999 is over the maximum"),
                      ("stem32:ir_r1_k99_s1_e6_i32_o32:head1280", "kernel 99 is over the maximum of 15"),
                      ("stem32:ir_r1_k3_s1_e999_i32_o32:head1280", "expansion 999 is over the maximum of 16"),
                      ("stem99999:ir_r1_k3_s1_e6_i32_o32:head1280", "between 1 and 4096"),
                      ("stem32:ir_r1_k3_s1_e6_i16_o16:head1280", "its input has 32 channels, not 16")]:
        assert main(["arch", "show", text]) == 2
        assert why in capsys.readouterr().err
    # the largest network the caps allow: ~1e11 weights, shown without building them (CPU time, which a busy
    # machine does not inflate the way it does the wall clock)
    started = time.process_time()
    assert main(["arch", "show", "stem32:cv_r32_k15_s1_e1_i32_o4096:head4096", "--resolution", "100000"]) == 0
    assert time.process_time() - started < 60
    assert "params" in capsys.readouterr().out


@FUZZ
@given(st.dictionaries(st.sampled_from([*QUERY_SETTINGS, "resolution", "colour", ""]),
                       st.one_of(st.integers(-5, 20_000).map(str), st.text(max_size=8),
                                 st.sampled_from(["1e9", "nan", "inf", "-0", "1.5", "true", "\u0663"])),
                       max_size=5))
def test_query_strings_are_settings_or_one_error(params):
    from urllib.parse import urlencode

    try:
        s = settings_from_query(urlencode(params))
    except MnasError as e:
        assert "\n" not in str(e)
    else:
        assert s.runs <= 10_000 and s.warmup <= 10_000 and s.rounds <= 100 and s.max_remeasures <= 10


@pytest.fixture(scope="module")
def agent():
    with running_agent(max_seconds=20) as server:
        yield server


@pytest.fixture(scope="module")
def model_file() -> bytes:
    shape = (1, 3, 16, 16)
    return export(prepare(zoo.get("mnasnet-small"), shape, num_classes=4), "onnx", shape)


@st.composite
def bodies(draw, model: bytes) -> bytes:
    kind = draw(st.sampled_from(["junk", "model", "mutated", "cut", "attack"]))
    if kind == "junk":
        return draw(st.binary(max_size=300))
    if kind == "model":
        return model
    if kind == "cut":
        return model[:draw(st.integers(1, len(model) - 1))]
    if kind == "attack":
        return draw(st.sampled_from([big_input_model([1, 3, 12000, 12000]), tiling_model([1, 8, 9000, 9000]),
                                     external_data_model("/etc/hostname", 4), external_data_model("../x", 4)]))
    data = bytearray(model)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@given(data=st.data())
@settings(FUZZ, max_examples=40)
def test_agent_requests_get_200_or_4xx_and_the_agent_lives(agent, model_file, data):
    query = data.draw(st.one_of(st.just(QUERY), st.dictionaries(
        st.sampled_from([*QUERY_SETTINGS, "colour"]),
        st.one_of(st.integers(-2, 40).map(str), st.sampled_from(["1e9", "x", "", "0.5", "99999"])), max_size=4)
        .map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()))))
    path = data.draw(st.sampled_from(["/v1/measure", "/v1/measure", "/v1/measure", "/health", "/", "/v1/../x"]))
    method = data.draw(st.sampled_from(["POST", "POST", "POST", "GET"]))
    code, answer = call(agent, method, f"{path}?{query}", data.draw(bodies(model_file)) if method == "POST" else None)
    event(f"HTTP {code}")
    assert code == 200 or 400 <= code < 500, answer
    assert code == 200 or "error" in answer
    assert call(agent, "GET", "/health")[0] == 200
