"""Fixtures for the core's unit tests; builders and `World` live in pl_world.py.

A `World` is one fresh SQLite store (in pytest's tmp_path) plus a `Context` with
configurable limits and deterministic GUIDs. Workflows run through the real store:
`world.run(workflow, *args)` applies the change set in one write transaction;
`world.refuse(Error, code, status, workflow, *args)` asserts that a workflow is refused
with exactly that error, and that the store is byte-for-byte unchanged afterwards.

Topology built by the helpers (all in `eastus` unless told otherwise):

- provider subscription S1, VNet `vp` 10.0.0.0/16 with subnets
  `fe` 10.0.1.0/24 (LB frontends), `be` 10.0.2.0/24, `nat` 10.0.3.0/24 and
  `nat2` 10.0.4.0/24 (both privateLinkServiceNetworkPolicies Disabled);
- load balancer `lb` with frontends fe1..feN, pools be1..beN and one TCP rule per
  frontend (feK:80 -> beK:8080);
- consumer subscription S2, VNet `vc` 10.1.0.0/16 with subnet `pe` 10.1.1.0/24.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The helper module sits next to this file; tests import it as `pl_world`.
sys.path.insert(0, str(Path(__file__).parent))

from pl_world import World

from privatelink.core.limits import Limits


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    """Factory: `make_world(pls_per_load_balancer=2)` gives a world with those limits."""
    made: list[World] = []

    def factory(**limits: int) -> World:
        world = World(tmp_path / f"world{len(made)}", Limits(**limits))
        made.append(world)
        return world

    yield factory
    for world in made:
        world.dispose()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    """A world with Azure's default limits."""
    return make_world()


@pytest.fixture
def service_world(world: World) -> World:
    """Provider (lb with 3 frontends), consumer VNet in S2, and `pls1` visible to all."""
    world.provider()
    world.consumer()
    world.create_pls()
    return world
