"""python -m tests.sandbox {up,down,status} DIR"""

from __future__ import annotations

import argparse
import sys

from .procs import SandboxError
from .runner import AlreadyRunning, down, status, up


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sandbox", description=__doc__)
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("dir", help="sandbox directory (holds sandbox.json)")
    args = ap.parse_args(argv)
    try:
        if args.command == "up":
            up(args.dir)
            print(f"export DRIFTD_SANDBOX={args.dir}")
        elif args.command == "down":
            down(args.dir)
        else:
            st = status(args.dir)
            if not st:
                print(f"no sandbox in {args.dir}")
                return 1
            for name, s in st.items():
                state = "ready" if s["ready"] else ("alive, not ready" if s["alive"] else "stopped")
                print(f"{name:15} pid={s['pid']!s:8} {state:17} {s['log']}")
            return 0 if all(s["ready"] for s in st.values()) else 1
    except AlreadyRunning as e:
        print(f"sandbox: refused: {e}", file=sys.stderr)
        return 2
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
