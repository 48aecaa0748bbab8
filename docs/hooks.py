"""MkDocs hooks of the documentation site.

* MathJax is served from the site itself: the ``docs`` extra installs ``django-static-mathjax`` (a copy of
  MathJax 3, Apache-2.0; the package needs no Django), and its self-contained ``tex-svg.js`` is added to the
  site as ``javascripts/mathjax/tex-svg.js``, so the rendered math needs no network.  Without that package the
  page loads MathJax from its public CDN instead (said in the build log).
* The gallery shows the committed figures of the reproductions, ``examples/results/*.png``: they are added to
  the site as ``gallery/img/<name>.png`` instead of being copied into ``docs/``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.conservative_ad")

ROOT = Path(__file__).resolve().parent.parent
LOCAL_MATHJAX = "javascripts/mathjax/tex-svg.js"
CDN_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js"


def mathjax_source() -> Path | None:
    """The path of MathJax's ``tex-svg.js`` in the installed ``django-static-mathjax``, or None."""
    try:
        import mathjax  # django-static-mathjax
    except ImportError:
        return None
    path = Path(mathjax.__file__).resolve().parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    return path if path.is_file() else None


def on_config(config):
    if mathjax_source() is None:
        log.info("django-static-mathjax is not installed (pip install -e '.[docs]'): MathJax is loaded from %s",
                 CDN_MATHJAX)
        config.extra_javascript = [CDN_MATHJAX if str(s) == LOCAL_MATHJAX else s for s in config.extra_javascript]
    return config


def on_files(files, config):
    source = mathjax_source()
    if source is not None:
        files.append(File.generated(config, LOCAL_MATHJAX, abs_src_path=str(source)))
    for png in sorted((ROOT / "examples" / "results").glob("*.png")):
        files.append(File.generated(config, f"gallery/img/{png.name}", abs_src_path=str(png)))
    return files
