"""Run the ```python blocks of a Markdown page and compare what each prints with the output the page shows.

The convention (README.md has a contributor note on it):

- The expected output of a ```python block is the ```text block right after it, with nothing but blank
  lines between the two. A block that prints must have one, and a ```text block right after a block that
  prints nothing is an error too.
- The blocks of a page run in page order in one namespace, as a reader who runs the page top to bottom
  would: a block may use what an earlier block of the same page defined.
- Printed output (stdout) is compared line by line, exactly, except for trailing whitespace on each line
  (Markdown editors strip it).
- A line whose value depends on the machine (a time, a memory size) ends with the marker
  `# machine-dependent` in the expected output. That line is compared with every number in it matched by
  any number; the marker, the expected line and the line printed are reported as not compared
  (`PageRun.not_compared`), never dropped silently.
- An exception in a block is reported with the page's own line numbers.
"""

from __future__ import annotations

import contextlib
import io
import re
import traceback
from dataclasses import dataclass, field

MACHINE_DEPENDENT = "# machine-dependent"
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Block:
    """A fenced block: its language (the info string's first word), first line of content (1-based) and
    content, less the fence's indentation."""

    language: str
    line: int
    text: str


@dataclass(frozen=True)
class Example:
    """A ```python block and the ```text block right after it (None where there is none)."""

    code: Block
    expected: Block | None


@dataclass
class PageRun:
    """What running a page found: `problems` fail the test; `not_compared` are the machine-dependent lines."""

    problems: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)


def fenced_blocks(markdown: str) -> list[tuple[Block, int]]:
    """Every fenced block of the page with the line of its closing fence."""
    lines = markdown.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}} *$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), len(lines))
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end])
        language = (opening["info"].split() or [""])[0]
        blocks.append((Block(language, i + 2, body + "\n" if body else ""), end + 1))
        i = end + 1
    return blocks


def examples(markdown: str) -> list[Example]:
    """The page's ```python blocks, each with the ```text block that follows it with only blank lines between."""
    lines = markdown.splitlines()
    blocks = fenced_blocks(markdown)
    found = []
    for n, (block, end) in enumerate(blocks):
        if block.language != "python":
            continue
        following = blocks[n + 1][0] if n + 1 < len(blocks) else None
        adjacent = following is not None and all(not line.strip() for line in lines[end : following.line - 2])
        found.append(Example(block, following if adjacent and following.language == "text" else None))
    return found


def _matches(expected: str, printed: str) -> bool:
    """A machine-dependent line: equal text, each number of the expected line matched by any number."""
    parts = _NUMBER.split(expected)
    pattern = _NUMBER.pattern.join(re.escape(part) for part in parts)
    return re.fullmatch(pattern, printed) is not None


def compare(expected: Block, printed: str, path: str, where: str, run: PageRun) -> None:
    """Compare the output a block (at `where`) printed with its expected-output block on page `path`."""
    first_line = expected.line
    want = [line.rstrip() for line in expected.text.splitlines()]
    got = [line.rstrip() for line in printed.splitlines()]
    mismatches = []
    for n in range(max(len(want), len(got))):
        w = want[n] if n < len(want) else None
        g = got[n] if n < len(got) else None
        if w is not None and w.endswith(MACHINE_DEPENDENT) and g is not None:
            w = w.removesuffix(MACHINE_DEPENDENT).rstrip()
            if _matches(w, g):
                run.not_compared.append(f"{path}:{first_line + n}: shows {w!r}, printed {g!r}")
                continue
        if w != g:
            shown, printed_line = (repr(line) if line is not None else "no line" for line in (w, g))
            mismatches.append(f"  line {first_line + n}: the page shows {shown}, the block printed {printed_line}")
    if mismatches:
        run.problems.append(f"{where}: the output differs from the page\n" + "\n".join(mismatches))


def run_page(markdown: str, path: str) -> PageRun:
    """Run every ```python block of `markdown` (named `path` in messages) in order and compare its output."""
    run = PageRun()
    namespace = {"__name__": "__docs__"}
    for example in examples(markdown):
        code = example.code
        where = f"{path}:{code.line - 1}"
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):  # the page's line numbers in tracebacks:
                exec(compile("\n" * (code.line - 1) + code.text, path, "exec"), namespace)
        except Exception:
            run.problems.append(f"{where}: the block raised\n{traceback.format_exc()}")
            return run  # later blocks may depend on this one
        output = printed.getvalue()
        if example.expected is None:
            if output:
                run.problems.append(
                    f"{where}: the block prints but no ```text block follows it with the output:\n{output}"
                )
        elif not output:
            run.problems.append(
                f"{where}: the page shows an output at line {example.expected.line} but the block prints nothing"
            )
        else:
            compare(example.expected, output, path, where, run)
    return run
