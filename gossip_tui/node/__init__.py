"""The Trio runtime of a gossip node: transports, tasks, events and the library API."""

from gossip_tui.core.keys import SecretKeyError, generate_key, parse_key

from ._config import NodeConfig, default_node_id
from ._crypto import SealedTransport, read_key_file
from ._events import (
    KeyChanged,
    KeyDeleted,
    NodeDead,
    NodeEvent,
    NodeJoined,
    NodeLeft,
    NodeRemoved,
    NodeUpdated,
)
from ._node import (
    MAX_KEY_VALUE_BYTES,
    KeyValueTooLarge,
    Node,
    NodeStateFull,
    open_node,
)
from ._node_base import NodeStats
from ._persistence import KeysNotSaved
from ._records import (
    RecordEvent,
    RecordJoined,
    RecordLeft,
    RecordPool,
    RecordUpdated,
    collect,
    publish,
)
from ._transport import (
    DatagramRejected,
    DatagramSocket,
    LinkFaults,
    MemoryNetwork,
    MemoryTransport,
    Transport,
    UdpTransport,
)

__all__ = [
    "MAX_KEY_VALUE_BYTES",
    "DatagramRejected",
    "DatagramSocket",
    "KeyChanged",
    "KeyDeleted",
    "KeyValueTooLarge",
    "KeysNotSaved",
    "LinkFaults",
    "MemoryNetwork",
    "MemoryTransport",
    "Node",
    "NodeConfig",
    "NodeDead",
    "NodeEvent",
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
    "SealedTransport",
    "SecretKeyError",
    "Transport",
    "UdpTransport",
    "collect",
    "default_node_id",
    "generate_key",
    "open_node",
    "parse_key",
    "publish",
    "read_key_file",
]
