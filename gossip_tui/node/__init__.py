"""The Trio runtime of a gossip node: transports, tasks, events and the library API."""

from typing import TYPE_CHECKING, Any

from gossip_tui.core.engine import NodeIsLive
from gossip_tui.core.generations import Restart
from gossip_tui.core.keys import SecretKeyError, generate_key, parse_key

from ._config import NodeConfig, default_node_id
from ._events import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeLeft,
    NodeRemoved,
    NodeUpdated,
    SeedAnswered,
    SeedUnreachable,
)
from ._lifecycle_log import log_lifecycle
from ._node import (
    MAX_KEY_VALUE_BYTES,
    KeyValueTooLarge,
    Node,
    NodeStateFull,
    open_node,
)
from ._node_base import NodeStats
from ._persistence import KeysNotSaved
from ._seeds import SeedStatus
from ._transport import (
    DatagramRejected,
    DatagramSocket,
    Transport,
    UdpTransport,
)

if TYPE_CHECKING:
    from ._crypto import SealedTransport, read_key_file
    from ._records import (
        RecordEvent,
        RecordJoined,
        RecordLeft,
        RecordPool,
        RecordUpdated,
        collect,
        publish,
    )

# Typed records (and the cattrs converter they need) load when first asked for: a node
# that publishes none, a headless one, never imports cattrs for them.
_RECORDS = frozenset(
    {
        "RecordEvent",
        "RecordJoined",
        "RecordLeft",
        "RecordPool",
        "RecordUpdated",
        "collect",
        "publish",
    }
)


# Sealing (and reading a key file) load when first asked for too: a node without a secret
# key, most of them, never runs them.
_SEALING = frozenset({"SealedTransport", "read_key_file"})


def __getattr__(name: str) -> Any:
    if name in _RECORDS:
        from . import _records

        return getattr(_records, name)
    if name in _SEALING:
        from . import _crypto

        return getattr(_crypto, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_KEY_VALUE_BYTES",
    "DatagramRejected",
    "DatagramSocket",
    "KeyChanged",
    "KeyDeleted",
    "KeyValueTooLarge",
    "KeysNotSaved",
    "Node",
    "NodeConfig",
    "NodeDead",
    "NodeEvent",
    "NodeIsLive",
    "NodeJoined",
    "NodeLeft",
    "NodeRemoved",
    "NodeStateFull",
    "NodeStats",
    "NodeUpdated",
    "RecordEvent",
    "RecordJoined",
    "RecordLeft",
    "RecordPool",
    "RecordUpdated",
    "Restart",
    "SealedTransport",
    "SecretKeyError",
    "SeedAnswered",
    "SeedStatus",
    "SeedUnreachable",
    "Transport",
    "UdpTransport",
    "collect",
    "default_node_id",
    "generate_key",
    "log_lifecycle",
    "open_node",
    "parse_key",
    "publish",
    "read_key_file",
]
