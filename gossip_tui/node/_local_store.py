"""Durable local keys: the operator's keys survive a restart.

The file holds the local node's set keys (not tombstones, not TTL keys, not the keys the
node manages itself), and for the keys set with a duration their deadline as wall-clock
time (Unix seconds, ``expires_at``: the node's own clock does not survive a restart).
It is rewritten atomically (temporary file, fsync, rename, fsync of
the directory) after every change, and read back at start, where the keys are published
again under the new generation. A file that cannot be read, or does not hold what we
write, is reported in one line and moved aside, never silently dropped or overwritten:
the node then starts with no saved keys.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import attrs

from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.fields_repr import fields_repr

log = logging.getLogger("gossip_tui.node")

STATE_FILE = "local-keys.json"
_FORMAT = 1
# mkstemp's prefix for the temporary files a save renames over the state file.
_TEMPORARY_PREFIX = f".{STATE_FILE}."


class CorruptStateFile(GossipTuiError, ValueError):
    """The state file exists but does not hold what we wrote."""


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


@attrs.frozen
class SavedKeys:
    """What the state file holds: the keys, and the deadlines (Unix seconds) of those
    that expire."""

    __repr__ = fields_repr

    keys: Mapping[str, str] = attrs.field(factory=dict)
    expires_at: Mapping[str, float] = attrs.field(factory=dict)


def _parse_expiries(data: dict[str, object], keys: Mapping[str, str]) -> dict[str, float]:
    # Optional, and still format 1: a gossip-tui without expiries reads the file too (its
    # keys then no longer expire), rather than move it aside as corrupt.
    expires_at = data.get("expires_at", {})
    if not isinstance(expires_at, dict) or not all(
        isinstance(k, str)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        for k, v in expires_at.items()
    ):
        raise CorruptStateFile("'expires_at' must map text to a finite number")
    return {k: float(v) for k, v in expires_at.items() if k in keys}


def _parse(raw: bytes) -> SavedKeys:
    import json  # here: a node without --state-dir (nor HTTP) never loads it

    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise CorruptStateFile(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise CorruptStateFile("not a gossip-tui local-keys file (format 1)")
    keys = data.get("keys")
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
    ):
        raise CorruptStateFile("'keys' must map text to text")
    return SavedKeys(dict(keys), _parse_expiries(data, keys))


def _aside_path(path: Path, why: str) -> Path:
    """A name beside ``path`` that no earlier file holds (two in one second stay two)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.{why}-{stamp}")
    count = 1
    while aside.exists() or aside.is_symlink():
        count += 1
        aside = path.with_name(f"{path.name}.{why}-{stamp}-{count}")
    return aside


def _fsync_dir(directory: Path) -> None:
    # Makes a rename (or a new entry) in ``directory`` itself durable.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_temporaries(state_dir: Path) -> None:
    # A save killed between mkstemp and rename leaves its temporary behind.
    try:
        leftovers = [p for p in state_dir.iterdir() if p.name.startswith(_TEMPORARY_PREFIX)]
    except OSError:
        return  # no directory yet, or not one: the load reports what matters
    for leftover in leftovers:
        try:
            leftover.unlink()
        except OSError as exc:
            log.warning("could not remove the stale temporary file %s: %s", leftover, exc)


def load_local_keys(state_dir: Path) -> dict[str, str]:
    """The saved keys, without their deadlines (see :func:`load_saved_keys`)."""
    return dict(load_saved_keys(state_dir).keys)


def load_saved_keys(state_dir: Path) -> SavedKeys:
    """The saved keys and deadlines; none when there is no file yet.

    Whatever is in the file's place (garbage, JSON of another shape or nested too deep,
    a directory, a file we may not read) is moved aside as ``<file>.corrupt-<time>``,
    reported in one line, and the node starts with no saved keys.
    """
    path = state_path(state_dir)
    try:
        return _parse(path.read_bytes())
    except FileNotFoundError:
        return SavedKeys()
    except (OSError, CorruptStateFile) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    aside = _aside_path(path, "corrupt")
    try:
        path.replace(aside)
        _fsync_dir(state_dir)
    except OSError as exc:
        log.error(
            "state file %s is unusable (%s) and could not be moved aside (%s); started "
            "with no saved keys",
            path,
            problem,
            exc.strerror or exc,
        )
    else:
        log.error(
            "state file %s is unusable (%s); moved it to %s and started with no saved keys",
            path,
            problem,
            aside,
        )
    return SavedKeys()


def recover_local_keys(state_dir: Path) -> dict[str, str]:
    """At start, before any save: remove what saves killed midway left, then load."""
    return dict(recover_saved_keys(state_dir).keys)


def recover_saved_keys(state_dir: Path) -> SavedKeys:
    """:func:`recover_local_keys`, with the deadlines."""
    _remove_temporaries(state_dir)
    return load_saved_keys(state_dir)


def _write_atomically(
    state_dir: Path,
    path: Path,
    keys: Mapping[str, str],
    expires_at: Mapping[str, float] | None = None,
) -> None:
    record: dict[str, object] = {"format": _FORMAT, "keys": dict(sorted(keys.items()))}
    if expires_at:
        record["expires_at"] = dict(sorted(expires_at.items()))
    import json  # as in _parse

    payload = json.dumps(record, indent=1)
    fd, tmp_name = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX, dir=state_dir)
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
    _fsync_dir(state_dir)


def save_local_keys(
    state_dir: Path, keys: Mapping[str, str], expires_at: Mapping[str, float] | None = None
) -> None:
    """Replace the saved keys (and the deadlines, Unix seconds, of those that expire)
    durably: once this returns they survive a crash or a power cut, and readers see the
    old file or the new, never half."""
    if not state_dir.is_dir():
        state_dir.mkdir(parents=True, exist_ok=True)
        _fsync_dir(state_dir.parent)  # the new directory's own entry
    _write_atomically(state_dir, state_path(state_dir), keys, expires_at)


def keep_refused_keys(state_dir: Path, refused: Mapping[str, str]) -> Path:
    """Write keys the node would not load beside the state file (the next save drops them
    from it), in the same format, so that the operator can still read them."""
    aside = _aside_path(state_path(state_dir), "refused")
    _write_atomically(state_dir, aside, refused)
    return aside
