"""`python -m hil.qemu`: run the reference firmware on emulated boards, or control them (`ctl`)."""

from __future__ import annotations

import sys

from hil.qemu.cli import main

if __name__ == "__main__":
    sys.exit(main())
