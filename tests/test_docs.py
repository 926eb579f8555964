"""Every command the README and docs/ show is one the CLI accepts: each `mpc-export ...` line of a shell
block is parsed by the command-line parser itself (click, through typer), without running anything; the
README stays short and links every docs/ page, and every link to docs/ resolves."""

import re
import shlex

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(path):
    """(line number, argv) of each `mpc-export` command in the page's sh blocks (comments dropped)."""
    found, in_block = [], False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("```"):
            in_block = line.strip() in ("```sh", "```bash", "```console")
            continue
        if not in_block:
            continue
        for part in re.split(r"&&|;", line.split(" #")[0]):
            words = shlex.split(part.strip()) if part.strip() else []
            if words[:1] == ["mpc-export"]:
                found.append((number, words[1:]))
    return found


def _parse(argv):
    """Parse ``argv`` as `mpc-export` would, to the subcommand's context; raises click's errors (typer's
    own copy of click)."""
    import typer

    from mpc_export.cli.main import app

    group = typer.main.get_command(app)
    with group.make_context("mpc-export", list(argv), resilient_parsing=False) as ctx:
        pending = list(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])) + list(ctx.args)
        name, command, rest = group.resolve_command(ctx, pending)
        assert command is not None, name
        with command.make_context(name, rest, parent=ctx):
            pass


CASES = [(path.relative_to(ROOT).as_posix(), number, argv) for path in PAGES for number, argv in _commands(path)]


def test_the_pages_show_commands():
    assert len([c for c in CASES if c[0] == "README.md"]) >= 8


@pytest.mark.parametrize("page, line, argv", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_every_shown_command_parses(page, line, argv):
    _parse(argv)


def test_a_wrong_command_does_not_parse():
    from typer.main import get_command  # noqa: F401  (typer's click: its UsageError below)

    usage_error = __import__("typer._click.exceptions", fromlist=["UsageError"]).UsageError
    with pytest.raises(usage_error):
        _parse(["build", "model.onnx", "--no-such-option"])


def test_the_readme_is_short_and_links_every_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, page.name
    for path in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", path.read_text()):
            assert (path.parent / target).is_file(), (path.name, target)
