"""The docs stay true: every setting documented, the settings page current, every link whole."""

import re
from pathlib import Path

from rag.settings_reference import settings_reference, undocumented
from tests.conftest import ROOT

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_setting_has_a_description() -> None:
    assert undocumented() == []


def test_the_settings_page_is_what_the_settings_model_makes() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == settings_reference(), (
        "run: python -m rag.settings_reference > docs/configuration.md"
    )


def test_every_link_between_the_pages_resolves() -> None:
    broken = []
    for page in _PAGES:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:: outside the project
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in _anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_readme_is_short_and_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, page.name


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    headings = re.findall(r"^#+\s+(.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_file_the_pages_name_exists() -> None:
    named = {
        path
        for page in _PAGES
        for path in re.findall(r"\b(?:rag|ui|bench|tests)/[\w/]+\.py\b", page.read_text())
    }
    assert named
    assert sorted(path for path in named if not (ROOT / path).exists()) == []
