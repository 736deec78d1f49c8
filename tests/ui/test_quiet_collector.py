"""The dashboard process's full collections wait for a moment nobody types."""

from __future__ import annotations

from typing import Any

import pytest

from gossip_tui.testing import FakeCluster, FakeNodeConfig
from gossip_tui.ui import GossipApp
from gossip_tui.ui._collector import QuietCollector


class _FakeGc:
    """What QuietCollector asks of the gc module, recorded: the test process's own
    collector is never touched."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.threshold = (700, 10, 10)

    def freeze(self) -> None:
        self.calls.append("freeze")

    def get_threshold(self) -> tuple[int, int, int]:
        return self.threshold

    def set_threshold(self, *threshold: int) -> None:
        self.threshold = threshold  # type: ignore[assignment]
        self.calls.append(("set_threshold", threshold))

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def collect(self) -> int:
        self.calls.append("collect")
        return 0


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _collector() -> tuple[QuietCollector, _FakeGc, _Clock]:
    fake, clock = _FakeGc(), _Clock()
    collector = QuietCollector(clock, collector=fake)
    collector.install()
    return collector, fake, clock


def test_install_freezes_start_up_and_takes_full_collections_from_python() -> None:
    fake = _collector()[1]
    assert fake.calls[0] == "freeze"
    young, middle, old = fake.threshold
    assert (young, middle) == (700, 10)  # young collections stay Python's
    assert old >= 2**31 - 1


def test_uninstall_gives_full_collections_back_as_found() -> None:
    collector, fake, _clock = _collector()
    collector.uninstall()
    assert fake.threshold == (700, 10, 10)
    assert fake.calls[-1] == "unfreeze"
    collector.uninstall()  # once only
    assert fake.calls.count("unfreeze") == 1


def test_a_full_collection_waits_for_a_quiet_second() -> None:
    collector, fake, clock = _collector()
    clock.now += collector.every - 1
    assert not collector.collect_if_quiet()  # not due yet
    clock.now += 1
    collector.key_seen()
    clock.now += collector.quiet_for / 2
    assert not collector.collect_if_quiet()  # due, but a key just came
    clock.now += collector.quiet_for
    assert collector.collect_if_quiet()
    assert fake.calls.count("collect") == 1
    assert not collector.collect_if_quiet()  # and not again until due


def test_typing_without_pause_still_gets_a_collection_at_the_latest_bound() -> None:
    collector, fake, clock = _collector()
    step = collector.quiet_for / 4
    collected_at = None
    while clock.now < 1_000.0 + collector.at_most_after * 2:
        clock.now += step
        collector.key_seen()
        if collector.collect_if_quiet():
            collected_at = clock.now - 1_000.0
            break
    assert collected_at == pytest.approx(collector.at_most_after, abs=step)
    assert fake.calls.count("collect") == 1


@pytest.mark.asyncio
async def test_the_dashboard_installs_it_and_tells_it_of_every_key() -> None:
    fake, clock = _FakeGc(), _Clock()
    collector = QuietCollector(clock, collector=fake)
    cluster = FakeCluster()
    app = GossipApp(FakeNodeConfig(node_id="node-0"), cluster.open_node, collector=collector)
    async with app.run_test() as pilot:
        assert fake.calls and fake.calls[0] == "freeze"
        clock.now += collector.every + collector.quiet_for
        await pilot.press("j")
        await pilot.pause()
        # The key was seen just now: the due collection waits.
        assert not collector.collect_if_quiet()
        clock.now += collector.quiet_for
        assert collector.collect_if_quiet()
