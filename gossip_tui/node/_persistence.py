"""A running node's persistence: the durable local keys saved to the state directory by a
saver task (group commit), and flush() waiting until a write is on disk."""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import attrs
import trio

from gossip_tui.core.agreement import VIEW_KEY
from gossip_tui.core.engine import LEAVING_KEY
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.fields_repr import fields_repr
from gossip_tui.core.models import KeyStatus

from ._local_store import save_local_keys
from ._node_base import NodeBase

log = logging.getLogger("gossip_tui.node")


class KeysNotSaved(GossipTuiError, OSError):
    """The local keys could not be written to the state directory: a change is applied
    (and gossiped) but would not survive a restart."""


# The keys the node sets itself: never saved, never loaded.
_MANAGED_KEYS = frozenset({"bind", LEAVING_KEY, VIEW_KEY})


@attrs.frozen
class _SaveFailure:
    __repr__ = fields_repr

    local_version: int  # the last local change the failed save was meant to hold
    error: OSError


class NodePersistence(NodeBase):
    """Saving the durable keys; the saver task is run by ``Node._run``."""

    def durable_keys(self) -> dict[str, str]:
        """The local keys worth keeping across a restart: set by the operator, not
        deleted, not temporary, not managed by the node itself."""
        return {
            key: value.value
            for key, value in self.engine.self_state.key_values.items()
            if value.status is KeyStatus.SET and key not in _MANAGED_KEYS
        }

    def durable_expiries(self, keys: dict[str, str]) -> dict[str, float]:
        """The deadlines of ``keys`` (durable ones) as wall-clock Unix seconds: the node's
        clock starts again at a restart, the wall clock goes on."""
        offset = time.time() - self._now()
        return {
            key: deadline + offset
            for key, deadline in self.expiries.deadlines.items()
            if key in keys
        }

    async def flush(self) -> None:
        """Wait until every local change made so far is on disk (at once without a state
        directory). Raises :class:`KeysNotSaved` when the save that should hold them
        failed. Concurrent callers share one save: a burst of writes waits for the save
        in progress and then for one more that holds them all."""
        if self.config.state_dir is None:
            return
        wanted = self._local_version
        while self._saved_version < wanted:
            failure = self._save_failure
            if failure is not None and failure.local_version >= wanted:
                raise KeysNotSaved(
                    failure.error.errno,
                    f"could not save the local keys to {self.config.state_dir}: "
                    f"{failure.error.strerror or failure.error}",
                ) from failure.error
            await self._save_ended.wait()

    async def save_keys(self, state_dir: Path) -> None:
        """Write the durable keys to ``state_dir``; raises OSError when that fails.

        The keys are taken once the previous save is done (one save at a time: the
        saver task and the final save on close may overlap), so that a save never
        replaces a newer one."""
        async with self._save_lock:
            version = self._local_version
            keys = self.durable_keys()
            expires_at = self.durable_expiries(keys)
            # The deadlines only when there are some: a save stays (state_dir, keys) for
            # the keys that never expire.
            save = (
                partial(save_local_keys, expires_at=expires_at) if expires_at else save_local_keys
            )
            try:
                await trio.to_thread.run_sync(save, state_dir, keys)
            except OSError as exc:
                self._save_failure = _SaveFailure(version, exc)
                raise
            else:
                self._saved_version = max(self._saved_version, version)
            finally:
                self._save_ended.set()
                self._save_ended = trio.Event()

    async def _save_keys(self, state_dir: Path) -> None:
        # Group commit: while one save runs in its thread, the changes made meanwhile
        # pile up behind a single dirty flag, and the next save holds them all.
        while True:
            await self._local_dirty.wait()
            self._local_dirty = trio.Event()
            try:
                await self.save_keys(state_dir)
            except OSError as exc:
                # Keep gossiping; the writers waiting in flush() get the error, and the
                # next change tries again.
                log.error("could not save the local keys to %s: %s", state_dir, exc)
