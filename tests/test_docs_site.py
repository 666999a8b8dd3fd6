"""The documentation site builds in strict mode (any warning fails), offline, and holds the API reference."""

import html
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed")
pytest.importorskip("material", reason="the docs extra is not installed")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
pytest.importorskip("latex2mathml", reason="the docs extra is not installed")
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


def _prose(page_html: str) -> str:
    """The visible text of a page's article outside code, with the TeX annotations of its formulas left out."""
    article = page_html[page_html.index("<article") : page_html.index("</article>")]
    return _text(re.sub(r"<(pre|code|annotation)\b.*?</\1>", " ", article, flags=re.DOTALL))


def _page(site: Path, page: str) -> str:
    """The built HTML of a page given by its path under docs/ (`algorithm.md`)."""
    built = page.removesuffix(".md").removesuffix("index").rstrip("/")
    return (site / built / "index.html").read_text(encoding="utf-8")


def _formulas(markdown: str) -> int:
    """How many $...$ and $$...$$ formulas a page's Markdown holds outside fenced blocks and inline code."""
    prose = re.sub(r"^\s*```.*?^\s*```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    display = re.findall(r"\$\$.+?\$\$", prose, flags=re.DOTALL)
    inline = re.findall(r"\$[^$]+\$", re.sub(r"\$\$.+?\$\$", "", prose, flags=re.DOTALL))
    return len(display) + len(inline)


def _math(page_html: str, tex: str) -> ET.Element:
    """The MathML element of the formula whose TeX source is `tex` (its annotation)."""
    for math in re.findall(r"<math\b.*?</math>", page_html, flags=re.DOTALL):
        root = ET.fromstring(math)
        if "".join(root.itertext()).endswith(tex):
            return root
    raise AssertionError(f"no formula {tex!r} on the page")


def _flat_html(fragment: str) -> str:
    """The text of an HTML fragment, tags removed and entities decoded (whitespace kept)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _tag(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _find(root: ET.Element, tag: str) -> list[ET.Element]:
    return [element for element in root.iter() if _tag(element) == tag]


def _flat(element: ET.Element) -> str:
    return "".join(element.itertext())


PAGES = sorted(str(p.relative_to(DOCS)) for p in DOCS.glob("*.md"))


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
    assert config["hooks"] == ["docs_hooks/mathml.py"]  # TeX becomes MathML at build time: no script loads
    assert all((DOCS / css).is_file() for css in config["extra_css"])


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


def test_the_site_loads_no_script_from_elsewhere(site):
    for page in site.rglob("*.html"):
        sources = re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", page.read_text(encoding="utf-8"))
        assert not [src for src in sources if re.match(r"[a-z]+:|//", src)], page


@pytest.mark.parametrize("page", PAGES)
def test_every_formula_of_a_page_is_rendered_as_mathml(site, page):
    built = _page(site, page)
    assert built.count("<math") == _formulas((DOCS / page).read_text(encoding="utf-8"))
    assert 'class="arithmatex">\\(' not in built and 'class="arithmatex">\\[' not in built  # no TeX left unconverted
    prose = _prose(built)
    assert "$" not in prose, f"{page}: a $ outside code reads {prose[prose.index('$') - 60 : prose.index('$') + 60]!r}"
    leaks = re.findall(r".{0,40}(?:\\[a-zA-Z]+|[_^]\{).{0,40}", prose)
    assert not leaks, f"{page}: raw TeX in the visible text: {leaks}"


def test_the_algorithm_page_renders_its_formulas_as_the_expected_mathml(site):
    page = _page(site, "algorithm.md")
    assert page.count("<math") >= 100

    gradient = _math(page, r"g = \frac{1}{N\sigma} \sum_{i} f_i\, s_i\, \varepsilon_{k(i)}")
    assert gradient.get("display") == "block"
    (fraction,) = _find(gradient, "mfrac")
    assert [_flat(part) for part in fraction] == ["1", "Nσ"]
    (total,) = _find(gradient, "munder")  # a displayed sum takes its index below it
    assert [_flat(part) for part in total] == ["∑", "i"]
    assert ["ε", "k(i)"] in [[_flat(part) for part in sub] for sub in _find(gradient, "msub")]

    gemm = _math(page, r"\frac{1}{N\sigma\sqrt{r}}\, \tilde{A}^\top \tilde{B}")
    assert [_flat(part) for part in _find(gemm, "msqrt")] == ["r", "r"]  # both fractions
    hats = [[_flat(part) for part in over] for over in _find(gemm, "mover")]
    assert hats == [["A", "~"], ["B", "~"]]  # \tilde over A and over B
    assert ["A~", "⊤"] in [[_flat(part) for part in sup] for sup in _find(gemm, "msup")]

    member = _math(page, r"\theta_i = \theta + \sigma\, s_i\, \varepsilon_{k(i)}")
    assert member.get("display") == "block"
    assert _math(page, r"s_i = (-1)^i").get("display") == "inline"


def test_an_unknown_tex_command_fails_the_build():
    spec = importlib.util.spec_from_file_location("mathml_hook", ROOT / "docs_hooks" / "mathml.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    assert "<mfrac>" in hook.mathml(r"\frac{1}{2}", "inline")
    with pytest.raises(ValueError, match="does not know"):
        hook.mathml(r"\frac{1}{\sigmaa}", "inline")
    with pytest.raises(ValueError, match="invalid MathML"):
        hook.mathml(r"\begin{aligned} a &= b \end{aligned}", "block")  # latex2mathml leaves a bare & there


def test_no_list_renders_as_a_paragraph_of_dashes(site):
    """A block inside a list item needs 4 spaces; with fewer, the items after it become text of a paragraph."""
    broken = []
    for page in sorted(site.rglob("*.html")):
        for paragraph in re.findall(r"<p>(.*?)</p>", page.read_text(encoding="utf-8"), flags=re.DOTALL):
            text = _flat_html(paragraph)
            if re.search(r"(^|\n)\s*(- |\d+\. )", text):
                broken.append(f"{page.relative_to(site)}: {text[:80]!r}")
    assert not broken, broken


def test_long_signatures_are_wrapped_to_the_configured_line_length(site):
    """mkdocstrings wraps a signature longer than `line_length` only where a formatter (ruff, the docs extra) is."""
    python = next(p for p in _config()["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    line_length = python["mkdocstrings"]["handlers"]["python"]["options"]["line_length"]
    page = _page(site, "reference/strategy.md")
    signatures = re.findall(r'<div class="doc-signature highlight"><pre>(.*?)</pre>', page, flags=re.DOTALL)
    (lines,) = [text.splitlines() for text in map(_flat_html, signatures) if text.startswith("EGGROLL(")]
    assert lines[0] == "EGGROLL(" and lines[-1] == ")", f"the signature of EGGROLL is not wrapped: {lines[0][:100]}"
    names = [line.strip().partition(":")[0] for line in lines[1:-1]]
    assert names == list(inspect.signature(egg.EGGROLL).parameters)  # one parameter a line
    assert max(map(len, lines)) <= line_length
