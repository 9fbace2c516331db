"""Build the documentation strictly and check that every page shows the code it includes.

``mkdocs build --strict`` does not notice an include that pymdownx.snippets left alone (a
formatter turned ``--8<--`` into ``--8 <--``, say): the page is built, with the include line as
its only "code". This script builds the site into a temporary directory and then fails, with one
message per problem, when

- a built page still shows include syntax (``--8<--``, escaped as ``--8&lt;--`` or not), or
- an example a page includes (``--8<-- "path"``, ``"path:section"`` or ``"path:start:end"``) is
  missing from that page's built HTML: every non-blank line of the snippet (section markers
  excepted) must appear, in order, in the page's text with tags stripped, entities unescaped and
  whitespace runs collapsed.

It also fails when mkdocs logged a line that ``--strict`` lets through but that means a worse
page (``QUIET_PROBLEMS``: signatures left unformatted because no formatter is installed).

Run it as ``scripts/check-docs`` (builds, then checks) or ``scripts/check-docs --built DIR`` (checks
a site built earlier). ``find_problems`` and ``check_page`` are importable for tests.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# pymdownx.snippets accepts any run of dashes around "8<"; a formatter may also have put spaces in.
# Anything like it left in a built page is an include that did not expand.
_UNEXPANDED = re.compile(r"-+[ \t]*8[ \t]*(?:<|&lt;|&#0*60;|&#x0*3c;)[ \t]*-+", re.IGNORECASE)
# A one-line include, as pymdownx.snippets reads it (a leading ";" escapes it).
_INCLUDE = re.compile(r"""^[ \t]*(?P<escape>;*)-+8<-+[ \t]+(?P<quote>["'])(?P<target>.+?)(?P=quote)[ \t]*$""")
# The opening or closing line of a block include (one path per line in between).
_BLOCK = re.compile(r"^[ \t]*-+8<-+[ \t]*$")
_SECTION_MARKER = re.compile(
    r"-+8<-+[ \t]+\[[ \t]*(?P<kind>start|end)[ \t]*:[ \t]*(?P<name>[a-z][-_0-9a-z]*)[ \t]*\]", re.IGNORECASE
)
_SECTION_NAME = re.compile(r"[a-z][-_0-9a-z]*", re.IGNORECASE)
_LINES = re.compile(r"(?P<path>.*?)(?P<start>:-?[0-9]*)(?P<end>:-?[0-9]*)?")


# Lines mkdocs logs at INFO, which --strict ignores, each with what to do about it.
QUIET_PROBLEMS = {
    "Formatting signatures requires": "signatures are not formatted: install the docs extra, which holds ruff",
}


class _Text(HTMLParser):
    """The text of an HTML page: tags dropped, entities unescaped, scripts and styles skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def page_text(html: str) -> str:
    """Return the visible text of ``html``, with tags stripped, entities unescaped, whitespace collapsed."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return _normalise("".join(parser.parts))


def includes(markdown: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, target)`` for each snippet include in ``markdown`` (escaped ones skipped)."""
    in_block = False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if _BLOCK.match(line):
            in_block = not in_block
            continue
        if in_block:
            target = line.strip()
            if target and not target.startswith(";"):
                yield number, target
            continue
        match = _INCLUDE.match(line)
        if match and not match["escape"]:
            yield number, match["target"].strip()


def snippet_lines(base: Path, target: str) -> list[str]:
    """Return the lines pymdownx.snippets would include for ``target``, relative to ``base``.

    ``target`` is ``path``, ``path:section`` or ``path:start[:end]`` (1-based, inclusive). Section
    markers are dropped, as pymdownx.snippets drops them.

    Raises:
        ValueError: The file, the section or the lines do not exist, or they hold no code.
    """
    path, lines = target, None
    head, _, tail = target.rpartition(":")
    section = None
    if head and _SECTION_NAME.fullmatch(tail):
        path, section = head, tail
    else:
        numbered = _LINES.fullmatch(target)
        if numbered:
            path = numbered["path"]
            start = int(numbered["start"][1:] or 1)
            end = int(numbered["end"][1:]) if numbered["end"] and numbered["end"][1:] else None
            lines = (start, end)
    source = base / path
    if not source.is_file():
        raise ValueError(f"{path} does not exist")
    text = source.read_text(encoding="utf-8").splitlines()
    if lines is not None:
        start, end = lines
        if start > len(text) or (end is not None and end > len(text)):
            raise ValueError(f"{path} has {len(text)} lines")  # pymdownx.snippets would include nothing, silently
        text = text[max(start, 1) - 1 : end]
    if section is not None:
        chosen: list[str] = []
        state = "before"
        for line in text:
            marker = _SECTION_MARKER.search(line)
            if marker and marker["name"] == section:
                if marker["kind"].lower() == "start" and state == "before":
                    state = "in"
                elif marker["kind"].lower() == "end" and state == "in":
                    state = "after"
                    break
                continue
            if state == "in":
                chosen.append(line)
        if state == "before":
            raise ValueError(f"{path} has no section {section!r}")
        text = chosen
    text = [line for line in text if not _SECTION_MARKER.search(line)]
    if not any(line.strip() for line in text):
        raise ValueError(f"{target} selects no code")
    return text


def source_problems(name: str, markdown: str, base: Path) -> list[str]:
    """Return the include problems visible in a page's source alone, without building it.

    Each include must read (file, section and lines exist, and select some code), and a line that
    looks like include syntax must be an include pymdownx.snippets reads (``--8<-- "path"``, a
    block, or escaped with ``;``): ``--8<--"path"``, ``--8<-- path`` or ``--8 <-- "path"`` are left
    in the page as text.
    """
    problems = []
    read = dict(includes(markdown))
    for number, line in enumerate(markdown.splitlines(), start=1):
        if number in read:
            try:
                snippet_lines(base, read[number])
            except (OSError, ValueError) as err:
                problems.append(f"{name}:{number}: include {read[number]!r} cannot be read: {err}")
        elif _UNEXPANDED.search(line) and not (_BLOCK.match(line) or line.lstrip().startswith(";")):
            problems.append(f"{name}:{number}: {line.strip()!r} is not an include pymdownx.snippets reads")
    return problems


def unexpanded(html: str) -> list[str]:
    """Return each piece of include syntax left in a built page (raw, escaped or split by tags)."""
    found = [unescape(match.group(0)) for match in _UNEXPANDED.finditer(html)]
    found += [match.group(0) for match in _UNEXPANDED.finditer(page_text(html))]
    return list(dict.fromkeys(found))


def check_page(name: str, markdown: str, html: str, base: Path) -> list[str]:
    """Return the problems of one page: its markdown source ``name`` and the HTML built from it.

    Args:
        name: How to call the page in messages (``docs/quickstart.md``).
        markdown: The page's source.
        html: The page as mkdocs built it.
        base: The directory include paths are relative to (``base_path`` in ``mkdocs.yml``).
    """
    problems = [
        f"{name}: the built page shows include syntax {syntax!r}: an include did not expand "
        "(check the --8<-- line in the source)"
        for syntax in unexpanded(html)
    ]
    text = page_text(html)
    for number, target in includes(markdown):
        try:
            wanted = snippet_lines(base, target)
        except (OSError, ValueError) as err:
            problems.append(f"{name}:{number}: include {target!r} cannot be read: {err}")
            continue
        position = 0
        for line in wanted:
            needle = _normalise(line)
            if not needle:
                continue
            found = text.find(needle, position)
            if found < 0:
                problems.append(
                    f"{name}:{number}: the built page does not show the code of {target!r}: "
                    f"first missing line {line.strip()!r}"
                )
                break
            position = found + len(needle)
    return problems


def built_page(site: Path, docs: Path, page: Path) -> Path:
    """Return where mkdocs (``use_directory_urls``) builds ``page`` of ``docs`` inside ``site``."""
    relative = page.relative_to(docs).with_suffix("")
    if relative.name in ("index", "README"):
        return site / relative.parent / "index.html"
    return site / relative / "index.html"


def find_problems(docs: Path, site: Path, base: Path) -> list[str]:
    """Check every page of ``site`` for include syntax, and every include of ``docs`` against its page."""
    problems: list[str] = []
    pages = {built_page(site, docs, page): page for page in sorted(docs.rglob("*.md"))}
    for page, source in pages.items():
        name = source.relative_to(docs.parent).as_posix()
        if not page.is_file():
            problems.append(f"{name}: no built page at {page.relative_to(site)}")
            continue
        problems += check_page(name, source.read_text(encoding="utf-8"), page.read_text(encoding="utf-8"), base)
    for other in sorted(set(site.rglob("*.html")) - set(pages)):
        problems += [
            f"{other.relative_to(site)}: the built page shows include syntax {syntax!r}"
            for syntax in unexpanded(other.read_text(encoding="utf-8"))
        ]
    return problems


def log_problems(output: str) -> list[str]:
    """One problem per line of mkdocs' ``output`` that ``QUIET_PROBLEMS`` knows, in order."""
    return [
        f"mkdocs: {advice} ({line.strip()})"
        for line in output.splitlines()
        for fragment, advice in QUIET_PROBLEMS.items()
        if fragment in line
    ]


def build(site: Path) -> list[str]:
    """Run ``mkdocs build --strict`` into ``site``; return the problems its log shows.

    Its log is copied to stderr as it was.

    Raises:
        SystemExit: The build failed (its output is already on stderr).
    """
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    result = subprocess.run(  # noqa: S603 -- our own interpreter, fixed arguments
        command, cwd=ROOT, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sys.stderr.write(result.stdout)
    if result.returncode:
        raise SystemExit(f"check-docs: mkdocs build --strict failed (exit {result.returncode})")
    return log_problems(result.stdout)


def main(argv: list[str] | None = None) -> int:
    """Build the site (or take ``--built DIR``), check it, print each problem; return the exit status."""
    parser = argparse.ArgumentParser(prog="check-docs", description="Build the docs; check each page shows its code.")
    parser.add_argument("--built", type=Path, help="check this already built site instead of building one")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="check-docs-") as temporary:
        site = args.built or Path(temporary)
        problems = build(site) if args.built is None else []
        problems += find_problems(ROOT / "docs", site, ROOT)
    for problem in problems:
        print(f"check-docs: {problem}", file=sys.stderr)
    if problems:
        print(f"check-docs: {len(problems)} problem(s) in the built documentation", file=sys.stderr)
        return 1
    print("check-docs: every page shows the code it includes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
