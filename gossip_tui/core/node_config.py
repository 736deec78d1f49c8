"""A node's settings (pure data). They live in the core, below the Trio runtime that
runs them, so that the command line and the client commands can read their defaults
without loading Trio."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from gossip_tui.core.codec import PROTOCOL_V0, PROTOCOL_VERSIONS
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.models import SocketAddress
from gossip_tui.core.validators import non_negative

from .fields_repr import fields_repr

DEFAULT_LISTEN_ADDR = SocketAddress.parse("127.0.0.1:10000")

_ADJECTIVES = (
    "amber", "bold", "brave", "calm", "clever", "crisp", "eager", "fancy", "gentle", "happy",
    "jolly", "keen", "lively", "lucky", "mellow", "nimble", "proud", "quick", "quiet", "rapid",
    "shiny", "silent", "smart", "snowy", "sunny", "swift", "tidy", "vivid", "wise", "zesty",
)  # fmt: skip
_ANIMALS = (
    "badger", "beaver", "bison", "crane", "dingo", "eagle", "falcon", "ferret", "gecko", "heron",
    "ibis", "jackal", "koala", "lemur", "lynx", "marmot", "newt", "ocelot", "otter", "panda",
    "puffin", "quail", "raven", "salmon", "seal", "tapir", "toucan", "walrus", "wombat", "yak",
)  # fmt: skip


def random_words(rng: random.Random | None = None) -> str:
    pick = (rng or random.SystemRandom()).choice
    return f"{pick(_ADJECTIVES)}-{pick(_ANIMALS)}-{pick(_ANIMALS)}"


def default_node_id(public_addr: SocketAddress, rng: random.Random | None = None) -> str:
    """chitchat-test's convention: ``server:<public_addr>-<random words>``."""
    return f"server:{public_addr}-{random_words(rng)}"


def _known_protocol_version(_instance: Any, attribute: Any, value: int) -> None:
    if value not in PROTOCOL_VERSIONS:
        raise ValueError(f"{attribute.name}: expected protocol version 0 or 1, got {value!r}")


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _bytes_tuple(value: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(value)


@attrs.frozen
class NodeConfig:
    """Everything a node needs to run. Only ``listen_addr`` matters for a first try."""

    __repr__ = fields_repr

    listen_addr: SocketAddress = DEFAULT_LISTEN_ADDR
    # What peers should use to reach us; the bound listen address when None.
    public_addr: SocketAddress | None = None
    node_id: str | None = None
    # Must differ on every restart; unix time in milliseconds at start when None.
    generation: int | None = None
    cluster_id: str = "testing"
    # "ip:port" or "host:port"; host names are resolved again every 60 s.
    seeds: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    gossip_interval: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    failure_detector: FailureDetectorConfig = attrs.field(factory=FailureDetectorConfig)
    marked_for_deletion_grace_period: float = attrs.field(default=3_600.0, validator=non_negative)
    initial_key_values: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    # Set a "bind" key holding the public address at start, as chitchat-test's users expect.
    publish_bind_key: bool = True
    seed_refresh_interval: float = 60.0
    # On a clean shutdown, tell the live peers we are leaving, waiting at most this long for
    # them to pick it up. Only gossip-tui peers understand it; chitchat sees a node die.
    announce_leave: bool = True
    leave_timeout: float = 1.0
    # Where the operator's local keys are kept across restarts (None: nowhere).
    state_dir: Path | None = None
    # 32-byte keys: when given, every datagram is sealed with the first and opened with any
    # (for rotation). Peers without a key can then neither join nor inject.
    secret_keys: tuple[bytes, ...] = attrs.field(default=(), converter=_bytes_tuple, repr=False)
    # The chitchat protocol version of the Syns we send: 0 is what every chitchat reads; 1
    # (chitchat after 0.10.1) compresses the digest, but 0.10.1 peers drop it. We answer
    # every Syn in its own version whatever this says.
    protocol_version: int = attrs.field(default=PROTOCOL_V0, validator=_known_protocol_version)
    # The partial-digest extension (see gossip_tui.core.digest_window), for clusters of
    # gossip-tui nodes past what one digest carries. Off by default: with it on, the node
    # learns nodes past the digest bound, and a chitchat peer then gets Syns too large to
    # send once the cluster outgrows one datagram.
    partial_digests: bool = False
