"""Fixtures shared by the reproduction tests."""

import datetime
import importlib.metadata
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _expected_version():
    try:
        return importlib.metadata.version("conservative-ad")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@pytest.fixture
def assert_run_record():
    """A checker of a JSON's ``"run"`` provenance record; its time must fall within this test."""
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)

    def check(record, *, seed, quick, argv=None):
        assert {"seed", "quick", "version", "argv", "utc"} <= set(record), record
        assert record["seed"] == seed and type(record["seed"]) is int
        assert record["quick"] is quick
        assert record["version"] == _expected_version()
        assert record["argv"] == (list(sys.argv) if argv is None else list(argv))
        t = datetime.datetime.fromisoformat(record["utc"])
        assert t.utcoffset() == datetime.timedelta(0), record["utc"]
        assert started <= t <= datetime.datetime.now(datetime.timezone.utc), (record["utc"], started)

    return check
