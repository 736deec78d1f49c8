#!/usr/bin/env python3
"""A fingerprint of every datagram the core's Simulation sends: the referee for a change
that must not alter behaviour or wire bytes (a cost cut). Run it on two trees and compare:

    python scripts/bench/sim_hashes.py                       # this tree
    python scripts/bench/sim_hashes.py --modes V0 V1 V1-1500 # every wire mode
    cd /tmp/s8-before && PYTHONPATH=. python /path/to/sim_hashes.py   # the other

Per size and seed it prints the count of datagrams, their bytes and a SHA-256 of all of
them in the order sent (with decode_replies, every reply goes through the decoder as a
node's would), and the rounds until every node lists every node live.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

from gossip_tui.core.codec import PROTOCOL_V1
from gossip_tui.core.failure_detector import FailureDetectorConfig
from gossip_tui.core.simulation import Simulation, chitchat_test_name

# The wire each mode runs: V0 and V1 as the defaults send them, V1 in 1,500-byte
# datagrams, and the partial windows at work: V0 in 1,200-byte datagrams, V1 in 1,500
# with chitchat-test's node ids (V1's compression fits the short names of V1-1500 whole
# at 120 nodes, so that mode never builds a window).
MODES: dict[str, dict[str, Any]] = {
    "V0": {},
    "V1": {"protocol_version": PROTOCOL_V1},
    "V1-1500": {"protocol_version": PROTOCOL_V1, "max_datagram_size": 1_500},
    "V0-1200": {"max_datagram_size": 1_200},
    "V1-1500-named": {
        "protocol_version": PROTOCOL_V1,
        "max_datagram_size": 1_500,
        "naming": chitchat_test_name,
    },
}


def fingerprint(size: int, seed: int, rounds: int, mode: str = "V0") -> dict[str, object]:
    sim = Simulation(
        size,
        seed=seed,
        gossip_interval=0.5,
        decode_replies=True,
        failure_detector=FailureDetectorConfig(sampling_window_size=32),
        **MODES[mode],
    )
    digest = hashlib.sha256()
    sent = [0, 0]
    send = sim._send

    def hashing(datagram: bytes, kind: str) -> bool:
        digest.update(len(datagram).to_bytes(4, "little") + datagram)
        sent[0] += 1
        sent[1] += len(datagram)
        return send(datagram, kind)

    sim._send = hashing  # type: ignore[method-assign]
    formed = None
    for done in range(1, rounds + 1):
        sim.round()
        if formed is None and all(len(e.live_nodes()) == size for e in sim.engines.values()):
            formed = done
    return {
        **({"mode": mode} if mode != "V0" else {}),
        "size": size,
        "seed": seed,
        "datagrams": sent[0],
        "bytes": sent[1],
        "sha256": digest.hexdigest()[:16],
        "formed_in_rounds": formed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 40, 120])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["V0"])
    args = parser.parse_args()
    for mode in args.modes:
        for size in args.sizes:
            for seed in args.seeds:
                print(json.dumps(fingerprint(size, seed, args.rounds, mode)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
