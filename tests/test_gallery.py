"""docs/architectures.md is generated from the specs and the golden figures; it must not go stale."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_gallery", ROOT / "scripts" / "gen_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gallery_is_up_to_date():
    gen = _generator()
    current = (ROOT / "docs" / "architectures.md").read_text(encoding="utf-8")
    assert current == gen.render(), "docs/architectures.md is stale: run python scripts/gen_gallery.py"


def test_gallery_shows_every_spec_with_its_check_table():
    gen = _generator()
    text = gen.render()
    for path in sorted((ROOT / "specs").glob("*.arch")):
        if path.stem == "blocks":
            continue
        assert f"\n### {path.stem}\n" in text
        assert f"`archc check specs/{path.stem}.arch --level stage`" in text
    assert "\x1b[" not in text  # plain Markdown, no terminal colours
