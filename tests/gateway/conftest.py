"""Fixtures for the gateway tests: the contract cloud as a real HTTP process, and a factory
of real gateway processes (stopped at teardown)."""
import pytest

from contract_cloud import ContractCloud
from gw_harness import TOKEN, GatewayProc


@pytest.fixture
def cloud(tmp_path):
    c = ContractCloud(tmp_path / "cloud", token=TOKEN).start()
    yield c
    c.kill()


@pytest.fixture
def gateway_factory(tmp_path):
    procs = []

    def make(broker_url: str, cloud_url: str, *extra: str, state: str = "gw") -> GatewayProc:
        g = GatewayProc(broker_url, cloud_url, tmp_path / state, *extra)
        procs.append(g)
        return g

    yield make
    for g in procs:
        g.stop()
