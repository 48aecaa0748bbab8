"""Files written by theory results (reports, sweep stores): whole or not at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` (fsynced), then move it over ``path``:
    a reader sees the old file or the new one, never a part; the temporary file is removed if
    anything fails, the error is re-raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
