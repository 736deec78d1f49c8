"""``GET /health`` is built by hand, without the converter (it is what a fresh node is asked
first, and the converter costs it cattrs and the response records): its bytes are the
converter's for the same state, and answering it imports neither."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gossip_tui.api import make_app
from gossip_tui.api._counts import NodeCounts
from gossip_tui.api._records import HealthView
from gossip_tui.core.converter import converter
from gossip_tui.core.models import Liveness
from gossip_tui.testing import FakeCluster, FakeNode, FakeNodeConfig
from tests.processes import run_probe

from .asgi_client import call
from .helpers import add_peer, api_node


def _alone() -> FakeNode:
    return api_node()


def _every_liveness() -> FakeNode:
    node = api_node()
    add_peer(node, "live", "127.0.0.1:10001")
    add_peer(node, "dead", "127.0.0.1:10002", liveness=Liveness.DEAD)
    add_peer(node, "doomed", "127.0.0.1:10003", liveness=Liveness.SCHEDULED_FOR_DELETION)
    add_peer(node, "left", "127.0.0.1:10004", liveness=Liveness.LEFT)
    add_peer(node, "left-2", "127.0.0.1:10005", liveness=Liveness.LEFT)
    return node


def _restarted_peer() -> FakeNode:
    # The older generation folds into the live one: counted once, as live.
    node = api_node()
    add_peer(node, "peer", "127.0.0.1:10001", generation=1, liveness=Liveness.DEAD)
    add_peer(node, "peer", "127.0.0.1:10001", generation=2)
    return node


def _unusual_names() -> FakeNode:
    # Text JSON escapes (quotes, backslashes, control characters) and text it does not
    # (non-ASCII, kept as is), and an IPv6 address.
    cluster = FakeCluster(clock=lambda: 100.0, cluster_id='clu"ster\\ é\n')
    return cluster.add_node(
        FakeNodeConfig(node_id="nœud-ü \u2028", generation=2**64 - 1, cluster_id=cluster.cluster_id)
    )


def _by_the_converter(node: FakeNode) -> bytes:
    snapshot = node.snapshot()
    counts = NodeCounts.of(snapshot)
    view = HealthView(
        status="ok",
        cluster_id=snapshot.cluster_id,
        chitchat_id=snapshot.self_node,
        live_nodes=counts.live,
        dead_nodes=counts.dead,
        left_nodes=counts.left,
    )
    data = converter.unstructure(view)
    return json.dumps(data, ensure_ascii=False, allow_nan=False).encode()


@pytest.mark.parametrize(
    "scene", [_alone, _every_liveness, _restarted_peer, _unusual_names], ids=lambda f: f.__name__
)
def test_health_body_is_the_converters_byte_for_byte(scene: Callable[[], FakeNode]) -> None:
    node = scene()
    reply = call(make_app(node), "GET", "/health")
    assert reply.status == 200
    assert reply.body == _by_the_converter(node)


_ASK_HEALTH = """
import sys
from gossip_tui.api import make_app
from tests.api.asgi_client import call
from tests.api.helpers import api_node

app = make_app(api_node())
before = set(sys.modules)
assert call(app, "GET", "/health").status == 200
loaded = set(sys.modules) - before
print(sorted(m for m in loaded if m.startswith(("cattrs", "gossip_tui.api._records"))))
"""


def test_answering_health_imports_neither_cattrs_nor_the_records() -> None:
    assert run_probe(_ASK_HEALTH)[-1] == "[]"
