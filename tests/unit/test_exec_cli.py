"""`privatelink exec`: which namespace each form runs in, and the clear refusals that come
before any kernel call (the netns tier runs the real thing, tests/netns/test_reach.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from privatelink.cli.main import main

INDEX = {
    "prefix": "px",
    "nics": {},
    "vnets": {},
    "sites": {
        "branch": {"name": "Branch", "netns": "px-x-s1", "address_space": ["192.168.0.0/16"]}
    },
    "internet": None,
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "dataplane.json").write_text(json.dumps(INDEX))
    return tmp_path


def _exec(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["exec", "--data-dir", str(data_dir), *args, "--", "true"])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "exactly one of --nic, --site (with --ip) and --internet"),
        (("--nic", "vm", "--internet"), "exactly one of"),
        (("--site", "branch"), "--site and --ip go together"),
        (("--site", "nowhere", "--ip", "192.168.1.10"), "no realized site 'nowhere'"),
        (("--site", "branch", "--ip", "10.0.0.1"), "not a host address of site Branch's space"),
        (("--site", "branch", "--ip", "192.168.0.0"), "not a host address"),
        (("--site", "branch", "--ip", "nonsense"), "is not an IPv4 address"),
        (("--internet",), "there is no internet namespace yet"),
    ],
)
def test_refusals_say_why(data_dir: Path, args: tuple[str, ...], says: str) -> None:
    code, output = _exec(data_dir, *args)
    assert code != 0
    assert says in " ".join(output.split()), output


def test_without_a_running_data_plane_it_says_so(tmp_path: Path) -> None:
    code, output = _exec(tmp_path, "--internet")
    assert code != 0 and "is the data plane running?" in output
