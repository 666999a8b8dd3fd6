"""The documentation site builds in strict mode (any warning fails), offline, and holds the API reference."""

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed")
pytest.importorskip("material", reason="the docs extra is not installed")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
yaml = pytest.importorskip("yaml")

import eggroll_np as egg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _nav_pages(node) -> list[str]:
    """Every page path in a mkdocs nav (lists of strings and {title: page or list} mappings)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    raise TypeError(f"unexpected nav entry {node!r}")


def _text(page_html: str) -> str:
    """The visible text of a page, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page_html)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr}\n{done.stdout}"
    return site_dir


def test_the_config_is_strict_offline_and_complete():
    config = _config()
    assert config["strict"] is True
    assert config["theme"]["name"] == "material"
    assert config["theme"].get("font") is False  # no Google Fonts request
    plugins = [p if isinstance(p, str) else next(iter(p)) for p in config["plugins"]]
    assert "mkdocstrings" in plugins
    assert not {"social", "privacy", "offline"} & set(plugins)  # nothing that downloads at build time
    pages = _nav_pages(config["nav"])
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"pages in the nav that do not exist: {missing}"
    unlisted = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in pages)
    assert not unlisted, f"pages missing from the nav: {unlisted}"


def test_the_site_builds_in_strict_mode_with_every_nav_page(site):
    for page in _nav_pages(_config()["nav"]):
        built = page.removesuffix(".md")
        built = site / ("index.html" if built == "index" else f"{built.removesuffix('/index')}/index.html")
        assert built.is_file(), f"{page} was not built ({built})"


def test_the_reference_renders_the_docstrings(site):
    page = _text((site / "reference" / "strategy" / "index.html").read_text(encoding="utf-8"))
    for obj in (egg.EGGROLL, egg.EGGROLL.tell, egg.EggrollState):
        first_line = inspect.getdoc(obj).splitlines()[0].replace("`", "")
        assert " ".join(first_line.split()) in page, f"the docstring of {obj.__qualname__} is not on the page"
    assert "population_size" in page and "nan_policy" in page  # the signature
    checkpoint = _text((site / "reference" / "checkpoint" / "index.html").read_text(encoding="utf-8"))
    assert inspect.getdoc(egg.load).splitlines()[0].replace("`", "").split(",")[0] in checkpoint


def test_the_site_makes_no_request_to_google_fonts(site):
    for page in site.rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(encoding="utf-8"), page
