"""The command line: every command group adds its parsers and a handler; user errors
are one line and exit code 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import pytest

from secvit import cli
from secvit.errors import SecvitError, UsageError

COMMANDS = sorted(cli.build_parser()._subparsers._group_actions[0].choices)


def test_the_groups_add_every_command():
    assert {"train", "party", "keys", "demo", "check", "profile", "compare", "pareto", "protocols"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_a_handler(command):
    parser = cli.build_parser()._subparsers._group_actions[0].choices[command]
    nested = parser._subparsers._group_actions[0].choices if parser._subparsers else {"": parser}
    for name, leaf in nested.items():  # a command with subcommands (supernet train|search): each of them
        assert callable(leaf.get_default("func")), f"{command} {name} has no handler"


def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def bad(_):
        raise UsageError("--n must be positive")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser(), "protocols", bad))
    assert cli.main(["protocols"]) == 2
    assert capsys.readouterr().err == "secvit: error: --n must be positive\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(_):
        raise KeyError("a programming error")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser(), "protocols", broken))
    with pytest.raises(KeyError, match="a programming error"):
        cli.main(["protocols"])
    assert not issubclass(KeyError, SecvitError)


def _with_handler(parser, command, handler):
    parser._subparsers._group_actions[0].choices[command].set_defaults(func=handler)
    return parser
