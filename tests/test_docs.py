"""The documentation is self-contained: every `docs/<page>.md#<anchor>` cited by the code, configs and tests, and
every link of the README and of the docs pages, resolves to a file and an anchor in the repository; no code cites
the reference specification outside the repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CODE_DIRS = ("focus", "tools", "configs", "tests", "datasets")
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".cpp", ".cu", ".h", ".sh", ".txt"}
CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
EXPLICIT_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _slug(heading):
    """GitHub's heading anchor: lower case, punctuation dropped (except `-` and `_`), spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors_of(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return set(EXPLICIT_ANCHOR.findall(text)) | {_slug(h) for h in HEADING.findall(text)}


def _code_files():
    for d in CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                yield path


def _citations():
    found = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", m.group(1), m.group(2)))
    return found


def test_docs_index_and_pages_exist():
    for page in ("README.md", "focus.md", "evaluation.md", "datasets.md", "speed_memory.md", "members.md"):
        assert (DOCS / page).is_file(), f"docs/{page} is missing"


def test_every_cited_docs_anchor_resolves():
    citations = _citations()
    assert citations, "no docs/ citation found in the code: the scan is broken"
    cache, broken = {}, []
    for where, page, anchor in citations:
        path = DOCS / page
        if not path.is_file():
            broken.append(f"{where}: docs/{page} does not exist")
            continue
        if anchor is None:
            continue
        if page not in cache:
            cache[page] = anchors_of(path)
        if anchor not in cache[page]:
            broken.append(f"{where}: docs/{page}#{anchor} has no such anchor")
    assert not broken, "\n".join(broken)


def _md_files():
    return [ROOT / "README.md", ROOT / "datasets" / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("md", _md_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve(md):
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in MD_LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (md.parent / file_part).resolve() if file_part else md
        if not path.exists():
            broken.append(f"{target}: {path.relative_to(ROOT) if ROOT in path.parents else path} does not exist")
            continue
        if anchor and path.suffix == ".md" and anchor not in anchors_of(path):
            broken.append(f"{target}: no anchor #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{md.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_quirk_anchors_are_unique_and_numbered():
    text = (DOCS / "focus.md").read_text(encoding="utf-8")
    ids = EXPLICIT_ANCHOR.findall(text)
    assert len(ids) == len(set(ids)), "duplicate anchors in docs/focus.md"
    quirks = sorted(int(i[1:]) for i in ids if re.fullmatch(r"q\d+", i))
    assert quirks == list(range(1, len(quirks) + 1)), "quirk anchors must be q1..qN without gaps"


def test_no_citation_of_the_external_specification():
    pattern = re.compile(r"spec \u00a7|FOCUS_" + "SPEC|" + "SPEC" + r"\.md", re.I)  # spelt so as not to match itself
    offenders = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in pattern.finditer(text):
            offenders.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not offenders, "cite docs/<page>.md#<anchor> instead:\n" + "\n".join(offenders)
