"""The documentation site and the packaging files.

* ``mkdocs build --strict`` passes (needs the ``docs`` extra, else skipped with a message);
* in headless Chromium (Debian's ``chromium``, else skipped with a message) the math of the built pages is typeset
  by MathJax, served from the site itself (every arithmatex span becomes an ``mjx-container``, none holds a TeX
  error), and the gallery's figures load (``naturalWidth > 0``);
* the version is single-sourced, the packages ship ``py.typed``, the API page of ``algorithms`` (which has no
  ``__all__``) lists every public name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS_EXTRA = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
# pages whose math is checked in the browser, and the page whose figures are checked
MATH_PAGES = ("getting-started", "concepts/iterations", "estimators")
GALLERY = "gallery"


def _missing_docs_extra() -> list[str]:
    missing = []
    for name in DOCS_EXTRA:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    missing = _missing_docs_extra()
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)}): pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs") / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_mkdocs_build_strict(site):
    for page in ("index.html", *(f"{p}/index.html" for p in (*MATH_PAGES, GALLERY)),
                 "api/conservative/index.html", "api/algorithms/index.html", "api/theory/index.html"):
        assert (site / page).is_file(), page
    # the API reference is generated from the docstrings: the public functions have their own entries
    api = (site / "api" / "conservative" / "index.html").read_text()
    for name in ("jacobian", "piggyback", "MatrixSet", "clarke_jacobian"):
        assert f'id="conservative.{name}"' in api, name
    assert 'id="algorithms.iterate"' in (site / "api" / "algorithms" / "index.html").read_text()
    assert 'id="theory.jsr"' in (site / "api" / "theory" / "index.html").read_text()


def _dump_dom(url: str, profile: Path) -> str:
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


# run after the page's load event (and MathJax's typesetting): record the images' natural widths in the DOM
PROBE = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var imgs = Array.from(document.querySelectorAll('article img'));
  document.body.setAttribute('data-probe', JSON.stringify(imgs.map(function (i) {
    return [i.getAttribute('src'), i.naturalWidth]; })));
}, 1000); });</script>"""


def test_site_renders_math_and_figures_in_chromium(site, tmp_path):
    if CHROMIUM is None:
        pytest.skip("headless browser check needs Debian's chromium: apt-get install -y chromium")
    if not (site / "javascripts" / "mathjax" / "tex-svg.js").is_file():
        pytest.skip("MathJax is not served from the site (django-static-mathjax missing from the docs extra): "
                    "the browser check would need the network")
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    gallery = copy / GALLERY / "index.html"
    gallery.write_text(gallery.read_text().replace("</body>", PROBE + "</body>"))
    pages = [(p, copy / p / "index.html") for p in (*MATH_PAGES, GALLERY)]
    for i, (name, path) in enumerate(pages):
        dom = _dump_dom(path.as_uri(), tmp_path / f"profile{i}")
        spans = len(re.findall(r'class="arithmatex"', dom))
        typeset = len(re.findall(r"<mjx-container\b", dom))
        if name in MATH_PAGES:
            assert spans > 5, f"{name}: expected math on the page, found {spans} arithmatex elements"
            assert typeset == spans, f"{name}: {typeset} of {spans} formulas typeset by MathJax"
            errors = re.findall(r'<g data-mml-node="merror"', dom)
            assert not errors, f"{name}: {len(errors)} formulas with TeX errors"
        else:
            probe = re.search(r'data-probe="([^"]*)"', dom)
            assert probe, "the gallery page did not finish loading"
            imgs = json.loads(probe.group(1).replace("&quot;", '"'))
            shown = {Path(src).name for src, _ in imgs}
            committed = {p.name for p in (ROOT / "examples" / "results").glob("*.png")}
            assert shown == committed, (f"figures of examples/results not in docs/gallery.md: {committed - shown}; "
                                        f"gallery figures not in examples/results: {shown - committed}")
            broken = [src for src, width in imgs if not width > 0]
            assert not broken, f"figures that did not load: {broken}"


def test_version_is_single_sourced():
    import algorithms
    import conservative
    import theory
    from conservative._version import __version__

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "conservative._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert conservative.__version__ == algorithms.__version__ == theory.__version__ == __version__
    assert re.search(rf"^version: {re.escape(__version__)}$", (ROOT / "CITATION.cff").read_text(), re.M)


def test_packages_ship_type_information():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]
    for pkg in pyproject["tool"]["setuptools"]["packages"]:
        assert (ROOT / pkg / "py.typed").is_file(), pkg
        assert "py.typed" in data[pkg], pkg
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    assert pyproject["project"]["license"] == "BSD-3-Clause" and pyproject["project"]["license-files"] == ["LICENSE"]


def test_algorithms_api_page_lists_every_public_name():
    import algorithms

    public = {n for n, v in vars(algorithms).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    listed = set(re.findall(r"^::: algorithms\.(\w+)$", (ROOT / "docs" / "api" / "algorithms.md").read_text(), re.M))
    assert public - listed == set(), f"public names missing from docs/api/algorithms.md: {public - listed}"
    assert listed - public == set(), f"docs/api/algorithms.md lists names algorithms lacks: {listed - public}"
