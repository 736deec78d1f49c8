"""A stable node id across restarts: created once in the state directory, reused after.

Each start still takes a new generation, so peers tell the incarnations apart; the id
staying the same lets them (and operators) see one node that restarted rather than a new
node every time and the old one dead for a day.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._local_store import _aside_path, _fsync_dir

log = logging.getLogger("gossip_tui.node")

NODE_ID_FILE = "node-id"
# Far more than any sensible name; a longer file is not one we wrote.
_MAX_NODE_ID_BYTES = 4096


def _parse(raw: bytes) -> str | None:
    if len(raw) > _MAX_NODE_ID_BYTES:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    node_id = text.removesuffix("\n")
    if not node_id or "\n" in node_id or "\x00" in node_id:
        return None
    return node_id


def _remove_temporaries(state_dir: Path) -> None:
    # A write killed between mkstemp and rename leaves its temporary behind.
    try:
        leftovers = [p for p in state_dir.iterdir() if p.name.startswith(f".{NODE_ID_FILE}.")]
    except OSError:
        return
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)


def _write_node_id(state_dir: Path, path: Path, node_id: str) -> None:
    if not state_dir.is_dir():
        state_dir.mkdir(parents=True, exist_ok=True)
        _fsync_dir(state_dir.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{NODE_ID_FILE}.", dir=state_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(node_id + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(state_dir)


def _saved_node_id(path: Path) -> str | None:
    """The id in ``path``; None when there is none yet. A file that does not hold an id
    is moved aside and reported, never silently replaced. OSError when the file (or the
    directory) cannot be read or moved."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    saved = _parse(raw)
    if saved is not None:
        return saved
    aside = _aside_path(path, "corrupt")
    path.replace(aside)
    log.error("node id file %s holds no node id; moved it to %s", path, aside)
    return None


def load_or_create_node_id(state_dir: Path, make_node_id: Callable[[], str]) -> str:
    """The node id saved in ``state_dir``; else a new one from ``make_node_id``, saved
    durably before it is used (a crash right after start must not change the id).

    A state directory we cannot use (not a directory, no permission, a full disk) does not
    stop the node: it runs under a new id for this run only, and says so."""
    path = state_dir / NODE_ID_FILE
    _remove_temporaries(state_dir)
    try:
        saved = _saved_node_id(path)
        if saved is not None:
            return saved
        node_id = make_node_id()
        _write_node_id(state_dir, path, node_id)
    except OSError as exc:
        node_id = make_node_id()
        log.error(
            "could not use the node id file %s (%s): running as %r for this run only",
            path,
            exc.strerror or exc,
            node_id,
        )
        return node_id
    log.info("new node id %r saved in %s", node_id, path)
    return node_id
