"""The CLI as a user runs it: JSON output and one-line errors with exit code 2."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from mnas import __version__
from mnas.testing import run_cli_process


def test_arch_show_json_has_exact_params(cli):
    r = cli("arch", "show", "mnasnet-a1", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["params"] == 3887038
    assert info["tpu"][0] == "r1_k3_s11_e1_i32_o16_noskip" and info["timm"][0].startswith("ds_")
    assert abs(info["macs"] - 311.6e6) / 311.6e6 < 0.01
    assert info["arch"].startswith("stem32:") and info["in_space"] is False


def test_arch_show_accepts_block_strings_and_width(cli):
    r = cli("arch", "show", "r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24", "-w", "0.5", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["arch"].startswith("stem16:")


def test_space_show_and_sample(cli):
    r = cli("space", "show", "--json")
    from mnas.space import MnasNetSpace
    assert json.loads(r.stdout)["size"] == MnasNetSpace.load().size > 10**16
    r = cli("arch", "sample", "--seed", "3", "--n", "3")
    lines = r.stdout.split()
    assert len(lines) == 3 and all(x.startswith("stem32:") for x in lines)
    assert cli("arch", "sample", "--seed", "3", "--n", "3").stdout.split() == lines
    assert json.loads(cli("arch", "sample", "--seed", "3", "-n", "3", "--json").stdout) == lines
    zoo = {e["name"]: e for e in json.loads(cli("arch", "list", "--json").stdout)}
    assert zoo["mnasnet-a1"]["arch"] == json.loads(cli("arch", "show", "mnasnet-a1", "--json").stdout)["arch"]


@pytest.mark.parametrize("args,needle", [
    (["arch", "show", "resnet50"], "neither a zoo model"),
    (["arch", "show", "stem32:ir_r1:head1280"], "lacks field"),
    (["arch", "show", "mnasnet-a1", "--bogus"], "No such option"),
    (["arch", "show", "mnasnet-a1", "--width-multiplier", "-1"], "width multiplier"),
    (["arch", "show", "mnasnet-a1", "--resolution", "abc"], "--resolution"),
    (["space", "show", "--space", "/does/not/exist.yaml"], "does not exist"),
])
def test_errors_are_one_line_exit_2(cli, args, needle):
    r = cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_the_installed_commands_run_as_processes():
    """The two ways a user starts mnas, each in its own process: ``python -m mnas`` and the ``mnas``
    console script (the other tests call ``mnas.cli.main`` in the test's process)."""
    p = run_cli_process("arch", "show", "resnet50")
    assert p.returncode == 2 and p.stdout == "" and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1
    script = shutil.which("mnas", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no mnas console script beside this interpreter (pip install -e . makes one)")
    import subprocess

    p = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"mnas {__version__}", p.stderr
