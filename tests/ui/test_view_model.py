"""The dashboard's view model without Textual: events and readings in, changes out."""

from __future__ import annotations

from gossip_tui.core.engine import LEAVING_KEY
from gossip_tui.core.models import KeyStatus, Liveness, NodeId
from gossip_tui.node import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeRemoved,
    NodeUpdated,
)
from gossip_tui.testing import FakeCluster, FakeNode, FakeNodeConfig
from gossip_tui.ui._view_model import ClusterCounts, ClusterViewModel, ViewChanges, log_worthy

CLOCK = 500.0


def _cluster() -> tuple[FakeCluster, FakeNode, ClusterViewModel]:
    cluster = FakeCluster(clock=lambda: CLOCK)
    cluster.add_peer("alpha", port=10001, keys={"role": "api", "zone": "eu"}, heartbeat=40)
    cluster.add_peer("bravo", port=10002, keys={"role": "worker"}, heartbeat=30)
    me = cluster.add_node(FakeNodeConfig(node_id="me", initial_key_values={"color": "blue"}))
    return cluster, me, ClusterViewModel(me.self_id, me.node_snapshot)


def _started() -> tuple[FakeCluster, FakeNode, ClusterViewModel, ViewChanges]:
    cluster, me, model = _cluster()
    return cluster, me, model, model.apply_readings(me.liveness_readings())


def _key_count(model: ClusterViewModel, node: NodeId) -> int:
    return model.rows[node].key_count


def test_the_first_reading_adds_every_node_reading_each_once() -> None:
    cluster, me, model, changes = _started()
    alpha, bravo = cluster.peer("alpha"), cluster.peer("bravo")
    assert {row.node for row in changes.added} == {me.self_id, alpha, bravo}
    assert not changes.updated and not changes.removed and changes.ticked
    assert sorted(me.nodes_read) == sorted([me.self_id, alpha, bravo])
    assert (_key_count(model, alpha), _key_count(model, bravo)) == (2, 1)
    assert model.rows[alpha].heartbeat == 40 and model.rows[alpha].max_version == 2
    assert model.rows[me.self_id].liveness is Liveness.SELF
    # This node's keys go to the local keys pane, in full.
    assert changes.local_keys == {"color"}
    assert model.local_key_values["color"].value == "blue"
    assert model.counts == ClusterCounts(live=3, dead=0, known=3)
    assert model.taken_at == CLOCK


def test_a_reading_updates_only_the_rows_that_moved_and_reads_no_key() -> None:
    cluster, me, model, _ = _started()
    alpha = cluster.peer("alpha")
    reads = len(me.nodes_read)
    cluster.members[alpha].heartbeat += 1
    cluster.members[alpha].phi = 3.0
    changes = model.apply_readings(me.liveness_readings())
    assert [row.node for row in changes.updated] == [alpha]
    assert (model.rows[alpha].heartbeat, model.rows[alpha].phi) == (41, 3.0)
    assert not changes.added and not changes.removed and not changes.local_keys
    assert len(me.nodes_read) == reads
    # Nothing moved: nothing to update, but the clock ticked (ages).
    again = model.apply_readings(me.liveness_readings())
    assert not again.rows_changed and again.ticked


def test_join_dead_and_removed_come_from_events() -> None:
    cluster, _me, model, _ = _started()
    charlie = cluster.add_peer("charlie", port=10003, keys={"role": "db"}, announce=False)
    joined = model.apply_events([NodeJoined(charlie)])
    assert [row.node for row in joined.added] == [charlie]
    assert model.rows[charlie].liveness is Liveness.LIVE and _key_count(model, charlie) == 1
    assert model.counts == ClusterCounts(live=4, dead=0, known=4)

    dead = model.apply_events([NodeDead(charlie)])
    assert [row.liveness for row in dead.updated] == [Liveness.DEAD]
    assert model.counts == ClusterCounts(live=3, dead=1, known=4)
    assert charlie in model.view().dead_nodes

    back = model.apply_events([NodeJoined(charlie)])
    assert [row.liveness for row in back.updated] == [Liveness.LIVE]

    # A node that says goodbye (the leaving key, then declared dead) has left.
    goodbye = [KeyChanged(charlie, LEAVING_KEY, "1", 2), NodeUpdated(charlie, 2), NodeDead(charlie)]
    assert [row.liveness for row in model.apply_events(goodbye).updated] == [Liveness.LEFT]
    assert charlie in model.view().dead_nodes

    removed = model.apply_events([NodeRemoved(charlie)])
    assert removed.removed == (charlie,) and not removed.updated
    assert charlie not in model.rows
    assert model.counts == ClusterCounts(live=3, dead=0, known=3)
    # Stale news about a forgotten node brings nothing back.
    cluster.remove(charlie)
    assert not model.apply_events([NodeDead(charlie)]).rows_changed
    assert charlie not in model.rows


def test_a_node_missing_from_a_reading_is_removed() -> None:
    cluster, me, model, _ = _started()
    bravo = cluster.peer("bravo")
    del cluster.members[bravo]
    changes = model.apply_readings(me.liveness_readings())
    assert changes.removed == (bravo,)
    assert bravo not in model.rows


def test_a_peer_key_event_updates_its_count_without_reading_it() -> None:
    cluster, me, model, _ = _started()
    alpha = cluster.peer("alpha")
    reads = len(me.nodes_read)

    changes = model.apply_events([KeyChanged(alpha, "rack", "7", 3), NodeUpdated(alpha, 3)])
    assert [(row.node, row.key_count, row.max_version) for row in changes.updated] == [
        (alpha, 3, 3)
    ]
    # A value that changes leaves the count alone; a deletion takes one away.
    model.apply_events([KeyChanged(alpha, "rack", "8", 4), NodeUpdated(alpha, 4)])
    assert _key_count(model, alpha) == 3
    model.apply_events([KeyDeleted(alpha, "zone", 5), NodeUpdated(alpha, 5)])
    assert _key_count(model, alpha) == 2
    # A late report of a version already counted changes nothing...
    assert not model.apply_events([KeyChanged(alpha, "zone", "eu", 2)]).rows_changed
    # ...but a key forgotten (version 0: collected after its grace period) goes.
    model.apply_events([KeyDeleted(alpha, "rack", 0)])
    assert _key_count(model, alpha) == 1
    assert len(me.nodes_read) == reads
    assert not changes.local_keys and not changes.selection


def test_events_lost_are_caught_up_by_the_next_reading() -> None:
    cluster, me, model, _ = _started()
    bravo = cluster.peer("bravo")
    cluster.write(bravo, "zone", "us", KeyStatus.SET)  # no event reaches the model
    assert _key_count(model, bravo) == 1
    changes = model.apply_readings(me.liveness_readings())
    assert [(row.node, row.key_count, row.max_version) for row in changes.updated] == [
        (bravo, 2, 2)
    ]
    assert me.nodes_read[-1] == bravo


def test_a_local_key_change_rereads_this_node_and_names_the_key() -> None:
    cluster, me, model, _ = _started()
    cluster.write(me.self_id, "lease", "held", KeyStatus.DELETE_AFTER_TTL)
    changes = model.apply_events(
        [KeyChanged(me.self_id, "lease", "held", 2), NodeUpdated(me.self_id, 2)]
    )
    assert changes.local_keys == {"lease"}
    lease = model.local_key_values["lease"]
    assert (lease.value, lease.status) == ("held", KeyStatus.DELETE_AFTER_TTL)
    assert _key_count(model, me.self_id) == 2
    view_of_me = model.view().node(me.self_id)
    assert view_of_me is not None and view_of_me.key_values is not None
    assert set(view_of_me.key_values) == {"color", "lease"}

    cluster.write(me.self_id, "color", "", KeyStatus.DELETED)
    changes = model.apply_events([KeyDeleted(me.self_id, "color", 3), NodeUpdated(me.self_id, 3)])
    assert changes.local_keys == {"color"}
    assert model.local_key_values["color"].is_deleted
    assert _key_count(model, me.self_id) == 1


def test_selecting_a_node_reads_its_keys_and_follows_it() -> None:
    cluster, me, model, _ = _started()
    bravo = cluster.peer("bravo")
    reads = me.nodes_read.count(bravo)

    changes = model.select(bravo)
    assert changes.selection
    assert me.nodes_read.count(bravo) == reads + 1
    selected = model.selected
    assert selected is not None and selected.node == bravo
    assert selected.key_values["role"].value == "worker"
    assert not model.select(bravo).selection  # the same node again: nothing to do

    # A key event on the selected node reads it again, so the detail shows the new value.
    cluster.set_peer_key(bravo, "role", "indexer")
    changes = model.apply_events([KeyChanged(bravo, "role", "indexer", 2), NodeUpdated(bravo, 2)])
    assert changes.selection
    assert model.selected is not None and model.selected.key_values["role"].value == "indexer"
    assert me.nodes_read.count(bravo) == reads + 2

    # A reading moves its heartbeat on, without reading its keys.
    cluster.members[bravo].heartbeat = 99
    changes = model.apply_readings(me.liveness_readings())
    selected = model.selected
    assert changes.selection and selected is not None and selected.heartbeat == 99
    assert me.nodes_read.count(bravo) == reads + 2

    # Gone: nothing is selected any more.
    changes = model.apply_events([NodeRemoved(bravo)])
    assert changes.selection and model.selected is None


def test_the_log_drops_the_node_update_that_a_key_change_already_says() -> None:
    cluster, me, model, _ = _started()
    alpha, bravo = cluster.peer("alpha"), cluster.peer("bravo")
    events: list[NodeEvent] = [
        KeyChanged(alpha, "rack", "7", 3),
        NodeUpdated(alpha, 3),
        NodeUpdated(bravo, 5),  # no key of bravo's in this batch: worth its line
        KeyDeleted(me.self_id, "color", 2),
        NodeUpdated(me.self_id, 2),
        NodeDead(bravo),
    ]
    expected = (events[0], events[2], events[3], events[5])
    assert log_worthy(events) == expected
    assert model.apply_events(events).log == expected
    # Only within a batch: a NodeUpdated on its own is logged.
    assert model.apply_events([NodeUpdated(alpha, 6)]).log == (NodeUpdated(alpha, 6),)
