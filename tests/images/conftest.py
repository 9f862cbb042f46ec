"""Fixtures for the image tests: the fault-injecting server and a loopback-only socket guard.

``tests/faultserver.py`` is loaded by path and registered as the module ``faultserver``,
so test modules can ``import faultserver`` whichever way pytest was started.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _load_faultserver():
    if "faultserver" in sys.modules:
        return sys.modules["faultserver"]
    path = Path(__file__).resolve().parents[1] / "faultserver.py"
    spec = importlib.util.spec_from_file_location("faultserver", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["faultserver"] = module
    spec.loader.exec_module(module)
    return module


faultserver_module = _load_faultserver()


@pytest.fixture(scope="session")
def faultserver() -> Iterator[object]:
    """A running :class:`faultserver.FaultServer` on 127.0.0.1 (shared by the session)."""
    with faultserver_module.FaultServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Refuse (and record) any TCP connect to a non-loopback address during image tests.

    The SSRF guard must refuse private and link-local targets *before* connecting;
    this makes a regression fail loudly instead of sending traffic off the machine.
    Returns the list of refused destinations.
    """
    refused: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
            if not ip.is_loopback:
                refused.append((str(address[0]), int(address[1])))
                raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return refused
