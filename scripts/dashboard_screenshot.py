#!/usr/bin/env python3
"""Draw docs/dashboard.svg, the README's screenshot of the dashboard, from a fake cluster.

Deterministic: a fixed clock, fixed generations and ports, no cursor blink, so that a run
on an unchanged dashboard rewrites the same file (``--check`` says whether it would change).

    python scripts/dashboard_screenshot.py            # rewrite docs/dashboard.svg
    python scripts/dashboard_screenshot.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The dashboard reads liveness_readings(), which gossip_tui.testing's FakeNode does not
# have yet: the dashboard tests' fake and sample cluster stand in until it does.
sys.path.insert(0, str(REPO))

from gossip_tui.testing import FakeCluster  # noqa: E402
from tests.ui.conftest import FIXED_CLOCK, SELF_CONFIG, make_app, populate  # noqa: E402

OUTPUT = REPO / "docs" / "dashboard.svg"
SIZE = (120, 32)


async def render() -> str:
    cluster = FakeCluster(clock=lambda: FIXED_CLOCK)
    populate(cluster)
    for index, role in enumerate(("api", "api", "worker", "worker", "cache"), start=1):
        cluster.add_peer(
            f"server:10.0.0.{index}:7280-{role}-{index}",
            port=10010 + index,
            keys={"role": role, "zone": f"eu-west-{1 + index % 2}"},
            heartbeat=300 + 7 * index,
            phi=0.3 + index / 10,
            last_update=FIXED_CLOCK - index / 5,
        )
    app = make_app(cluster, config=SELF_CONFIG)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):
            if app.node is not None and app.nodes_table.row_count >= 11:
                break
            await pilot.pause(0.05)
        else:
            raise SystemExit("the dashboard did not show the cluster")
        await pilot.pause(0.3)
        return app.export_screenshot(title="gossip-tui")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    svg = asyncio.run(render())
    if args.check:
        same = args.output.exists() and args.output.read_text(encoding="utf-8") == svg
        print(f"{args.output}: {'up to date' if same else 'out of date'}")
        return 0 if same else 1
    args.output.write_text(svg, encoding="utf-8")
    print(f"wrote {args.output} ({len(svg):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
