"""The command reference (docs/commands.md), written from the CLI's own `--help`, so it can
never say what the commands do not: `python -m artsearch.cli.reference` (or `make docs`)
rewrites it, and tests/test_docs.py fails when it is stale."""

from __future__ import annotations

import sys
from pathlib import Path

import click

WIDTH = 100  # the width the help is wrapped at, whatever the terminal
HEADER = """# Command reference

Every `artsearch` command's `--help`, as the command prints it. Generated from the CLI by
`make docs` (`python -m artsearch.cli.reference`); `tests/test_docs.py` fails when this
page is stale, so edit the commands' help, not this file. The guide to using them, with
examples and measurements: [guide.md](guide.md).
"""


def reference() -> str:
    """docs/commands.md's text: the top-level help, then each command's, by name."""
    from artsearch.cli import cli

    def help_of(command: click.Command, name: str, parent: click.Context | None) -> str:
        ctx = click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH,
                            max_content_width=WIDTH)
        return command.get_help(ctx)

    # The group's own settings (-h as well as --help), as a real invocation has them: click
    # remembers a command's help option from the first context that asks for it.
    top = click.Context(cli, info_name="artsearch", terminal_width=WIDTH,
                        max_content_width=WIDTH, **cli.context_settings)
    parts = [HEADER, "## artsearch\n", "```text", cli.get_help(top), "```\n"]
    for name in sorted(cli.commands):
        parts += [f"## artsearch {name}\n", "```text",
                  help_of(cli.commands[name], name, top), "```\n"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "docs" / "commands.md"
    out.write_text(reference(), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
