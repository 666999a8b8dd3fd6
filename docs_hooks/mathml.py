"""mkdocs hook: the formulas of the pages become MathML when the site is built.

pymdownx.arithmatex (generic mode) marks `$...$` as `<span class="arithmatex">\\(...\\)</span>` and `$$...$$` as
`<div class="arithmatex">\\[...\\]</div>`. This hook replaces the TeX inside each mark with the MathML that
latex2mathml makes of it, the TeX kept as an annotation. Browsers render MathML themselves, so the site loads no
script for its formulas and builds without a network. A formula latex2mathml cannot convert (an unknown command,
an environment it mangles) fails the build and names the page.
"""

import re
import xml.etree.ElementTree as ET
from html import escape, unescape

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

_MARKED = re.compile(
    r'(?P<opening>[(\[]?)<(?P<tag>span|div) class="arithmatex">\\[(\[](?P<tex>.*?)\\[)\]]</(?P=tag)>'
    r"(?P<closing>[,.;:!?)\]]*)",
    re.DOTALL,
)
_TAG = re.compile(r"<[^>]+>")


def mathml(tex: str, display: str) -> str:
    """The MathML of one TeX formula (display "inline" or "block"), with its TeX as an annotation."""
    math = convert(tex, display=display)
    try:
        ET.fromstring(math)
    except ET.ParseError as error:
        raise ValueError(f"latex2mathml made invalid MathML of {tex!r}: {error}") from None
    if "\\" in _TAG.sub("", math):
        raise ValueError(f"latex2mathml does not know a command of {tex!r}")
    start, inner = math.removesuffix("</math>").split(">", 1)
    annotation = f'<annotation encoding="application/x-tex">{escape(tex, quote=False)}</annotation>'
    return f"{start}><semantics><mrow>{inner}</mrow>{annotation}</semantics></math>"


def on_page_content(html: str, page, **kwargs) -> str:
    def replace(marked: re.Match) -> str:
        tag, tex = marked["tag"], unescape(marked["tex"]).strip()
        try:
            math = mathml(tex, "block" if tag == "div" else "inline")
        except ValueError as error:
            raise PluginError(f"{page.file.src_uri}: {error}") from None
        # Browsers may break a line between a formula and a bracket or punctuation next to it; kept in one nowrap
        # span, they stay together (docs/css/math.css).
        return f'<{tag} class="arithmatex">{marked["opening"]}{math}{marked["closing"]}</{tag}>'

    return _MARKED.sub(replace, html)
