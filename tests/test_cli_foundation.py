"""The CLI as a user runs it: JSON output and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "mnas", *args], capture_output=True, text=True, timeout=120)


def test_arch_show_json_has_exact_params():
    r = run("arch", "show", "mnasnet-a1", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["params"] == 3887038
    assert info["tpu"][0] == "r1_k3_s11_e1_i32_o16_noskip" and info["timm"][0].startswith("ds_")
    assert abs(info["macs"] - 311.6e6) / 311.6e6 < 0.01
    assert info["arch"].startswith("stem32:") and info["in_space"] is False


def test_arch_show_accepts_block_strings_and_width():
    r = run("arch", "show", "r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24", "-w", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["arch"].startswith("stem16:")


def test_space_show_and_sample():
    r = run("space", "show", "--json")
    from mnas.space import MnasNetSpace
    assert json.loads(r.stdout)["size"] == MnasNetSpace.load().size > 10**16
    r = run("arch", "sample", "--seed", "3", "--n", "3")
    lines = r.stdout.split()
    assert len(lines) == 3 and all(x.startswith("stem32:") for x in lines)
    assert run("arch", "sample", "--seed", "3", "--n", "3").stdout.split() == lines
    assert json.loads(run("arch", "sample", "--seed", "3", "-n", "3", "--json").stdout) == lines
    zoo = {e["name"]: e for e in json.loads(run("arch", "list", "--json").stdout)}
    assert zoo["mnasnet-a1"]["arch"] == json.loads(run("arch", "show", "mnasnet-a1", "--json").stdout)["arch"]


@pytest.mark.parametrize("args,needle", [
    (["arch", "show", "resnet50"], "neither a zoo model"),
    (["arch", "show", "stem32:ir_r1:head1280"], "lacks field"),
    (["arch", "show", "mnasnet-a1", "--bogus"], "No such option"),
    (["arch", "show", "mnasnet-a1", "--width-multiplier", "-1"], "width multiplier"),
    (["arch", "show", "mnasnet-a1", "--resolution", "abc"], "--resolution"),
    (["space", "show", "--space", "/does/not/exist.yaml"], "does not exist"),
])
def test_errors_are_one_line_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
