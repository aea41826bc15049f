"""Asking a person things at the terminal: one line, yes/no, or a pick from a numbered list.

:class:`Prompter` is what the menu's screens share; pressing Enter on a pick means "go
back", which it signals with :class:`Back` so a screen can unwind from any depth::

    choice = prompter.pick("Target", [("all", Text("all agents")), ("sensor", Text("sensor"))])
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from watchkeeper.cli._format import plain

__all__ = ["Back", "Choice", "Prompter"]

#: One line of a pick: the value returned, its label, and optionally a note beside it.
Choice = tuple[str, Text] | tuple[str, Text, Text]


class Back(Exception):
    """The person chose to go back to the menu."""


class Prompter:
    """Questions on ``console``; EOFError and KeyboardInterrupt go to the caller."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def ask(self, prompt: str) -> str:
        """One line of input; EOFError and KeyboardInterrupt go to the caller."""
        return self.console.input(Text(prompt, style="bold cyan")).strip()

    def pause(self) -> None:
        self.console.print()
        self.ask("Press Enter to return to the menu")

    def confirm(self, question: Text) -> bool:
        question.append(" [y/N] ", style="bold")
        answer = self.console.input(question).strip().lower()
        return answer in ("y", "yes")

    def pick(self, title: str, options: Sequence[Choice]) -> str:
        """A numbered list of ``(value, label)`` or ``(value, label, note)``; returns the
        value chosen by its number (or typed exactly). Enter alone raises :class:`Back`."""
        table = Table(
            title=Text(title), title_justify="left", title_style="bold", show_header=False, box=None
        )
        table.add_column(justify="right", style="bold cyan", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(style="dim")
        for index, (_, label, *note) in enumerate(options, 1):
            table.add_row(str(index), label, *note)
        self.console.print(table)
        values = [option[0] for option in options]
        while True:
            answer = self.ask(f"Choose 1-{len(options)} (Enter to go back): ")
            if not answer:
                raise Back
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return values[int(answer) - 1]
            if answer in values:
                return answer
            self.console.print(plain(f"{answer!r} is not one of the choices", "red"))
