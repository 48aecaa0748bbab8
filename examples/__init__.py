"""Reproductions of the papers' experiments.

Run from the repository root: ``python -m examples [NAMES...] [--quick] [--out DIR] [--seed S] [--list]``.
Each experiment is a module with ``run(out_dir, quick=False, seed=0) -> dict`` (the JSON summary)
and a ``main()`` for ``python examples/<name>.py``. Files are written atomically, and every JSON
carries a ``"run"`` record (seed, quick, package version, command line, UTC time); see ``_common``.
"""
