"""Durable local keys: the operator's keys survive a restart.

The file holds the local node's set keys (not tombstones, not TTL keys, not the keys the
node manages itself). It is rewritten atomically (temporary file, fsync, rename) after
every change, and read back at start, where the keys are published again under the new
generation. A file that cannot be read is reported and moved aside, never silently
dropped or overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("gossip_tui.node")

STATE_FILE = "local-keys.json"
_FORMAT = 1


class CorruptStateFile(ValueError):
    """The state file exists but does not hold what we wrote."""


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def _parse(raw: bytes) -> dict[str, str]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CorruptStateFile(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise CorruptStateFile("not a gossip-tui local-keys file (format 1)")
    keys = data.get("keys")
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
    ):
        raise CorruptStateFile("'keys' must map text to text")
    return dict(keys)


def load_local_keys(state_dir: Path) -> dict[str, str]:
    """The saved keys; {} when there is no file yet. A corrupt file is moved aside."""
    path = state_path(state_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        return _parse(raw)
    except CorruptStateFile as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.replace(aside)
        log.error(
            "state file %s is corrupt (%s); moved it to %s and started empty", path, exc, aside
        )
        return {}


def save_local_keys(state_dir: Path, keys: Mapping[str, str]) -> None:
    """Replace the saved keys atomically: readers see the old file or the new, never half."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir)
    payload = json.dumps({"format": _FORMAT, "keys": dict(sorted(keys.items()))}, indent=1)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=state_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
