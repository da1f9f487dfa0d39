"""The command line's two human faces, read from the ``cli`` docstring (docopt-ng's
grammar): ``COMMAND --help`` shows that command's usage, description and options only,
and a command line that matches no usage is one line naming what is wrong (an unknown
option or command, a missing flag, a flag the command does not take), never docopt's
dump of unmatched patterns.

The docstring's options are grouped under headings ``Options of A, B, ...:`` naming the
commands that take them, and ``General options:`` for all; its ``Commands:`` section
describes each command on lines starting with its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docopt import DocoptExit, ParsedOptions, docopt, parse_docstring_sections, parse_options

PROGRAM = "data-service"
HEADING = re.compile(r"^(?P<title>(?=\S)[^\n]*?options[^\n]*):[ \t]*$", re.I | re.M)
COMMAND_WORD = re.compile(r"\([a-z| -]+\)|[a-z][a-z-]*")  # `serve`, or alternatives `(promote | disable)`
FLAG = re.compile(r"--[a-z-]+(?:=[A-Z]+)?")


class UsageError(Exception):
    """A command line that matches no usage; the message is one line saying why."""


class HelpShown(Exception):
    """``--help`` was answered (printed); the caller exits 0."""


def parse(doc: str, argv: list[str]) -> ParsedOptions:
    """docopt's parse of ``argv``; HelpShown after printing a command's help, UsageError
    (one line) for a command line no usage matches."""
    commands = {word for usage in usages(doc) for alternatives in usage.words for word in alternatives}
    words = [arg for arg in argv if arg in commands]
    if words and {"-h", "--help"} & set(argv):
        print(command_help(doc, words))
        raise HelpShown
    try:
        return docopt(doc, argv)
    except DocoptExit:
        raise UsageError(explain(doc, argv)) from None


@dataclass(frozen=True)
class Usage:
    """One usage line: its command words (each a set of alternatives), the flags it
    requires (``--keys-dir=DIR``), the others it names, and whether it takes ``[options]``."""

    text: str
    words: tuple[frozenset[str], ...]
    required: tuple[str, ...]
    named: frozenset[str]
    any_option: bool

    def takes(self, flag: str) -> bool:
        return self.any_option or flag in self.named


def usages(doc: str) -> list[Usage]:
    found = []
    for line in parse_docstring_sections(doc).usage_body.splitlines():
        program, _, rest = line.strip().partition(" ")
        if program != PROGRAM:
            continue
        text, words = rest, []
        while match := COMMAND_WORD.match(rest):
            words.append(frozenset(word.strip() for word in match.group(0).strip("()").split("|")))
            rest = rest[match.end() :].lstrip()
        required = tuple(FLAG.findall(re.sub(r"\[[^\]]*\]", "", rest)))
        named = frozenset(flag.partition("=")[0] for flag in FLAG.findall(rest))
        found.append(Usage(text, tuple(words), required, named, "[options]" in rest))
    return [usage for usage in found if usage.words]


def explain(doc: str, argv: list[str]) -> str:
    """One line: why ``argv`` matches no usage of ``doc``."""
    options = {}
    for known in parse_options(parse_docstring_sections(doc).after_usage):
        options.update({name: known for name in (known.longer, known.short) if name})
    given: list[str] = []
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, _ = arg.partition("=")
        option = options.get(name)
        if option is None:
            return f"unknown option {name} (see {PROGRAM} --help)"
        if option.argcount and not eq:
            if not args or args[0].startswith("-"):
                return f"{name} needs a value ({name}=...)"
            args.pop(0)
        name = option.longer or name
        if name in given:
            return f"{name} is given twice"
        given.append(name)
    return _explain_command(usages(doc), positional, given)


def _explain_command(lines: list[Usage], positional: list[str], given: list[str]) -> str:
    candidates = lines
    for depth, word in enumerate(positional):
        deeper = [usage for usage in candidates if len(usage.words) > depth]
        if not deeper:
            return f"unexpected argument {word!r} after {' '.join(positional[:depth])}"
        fitting = [usage for usage in deeper if word in usage.words[depth]]
        if not fitting:
            known = ", ".join(sorted({w for usage in deeper for w in usage.words[depth]}))
            where = f"{' '.join(positional[:depth])}: " if depth else ""
            return f"{where}unknown command {word!r}: one of {known}"
        candidates = fitting
    exact = [usage for usage in candidates if len(usage.words) == len(positional)]
    if not exact:
        known = ", ".join(sorted({w for usage in candidates for w in usage.words[len(positional)]}))
        return (
            f"{' '.join(positional)} needs a command: one of {known}"
            if positional
            else f"no command given: one of {known}"
        )
    command = " ".join(positional)
    for usage in exact:
        if missing := [flag for flag in usage.required if flag.partition("=")[0] not in given]:
            return f"{command} needs {' and '.join(missing)} (see {PROGRAM} {command} --help)"
        if extra := [flag for flag in given if not usage.takes(flag)]:
            return f"{command} does not take {', '.join(extra)} (see {PROGRAM} {command} --help)"
    return f"these arguments match no usage of {command} (see {PROGRAM} {command} --help)"


def command_help(doc: str, words: list[str]) -> str:
    """The usage lines, description and options of the command ``words`` names."""
    sections = parse_docstring_sections(doc)
    mine = [u.text for u in usages(doc) if all(w in alts for w, alts in zip(words, u.words, strict=False))]
    out = ["Usage:", *(f"  {PROGRAM} {text}" for text in mine)]
    if described := _described(sections.after_usage, " ".join(words)):
        out += ["", *described]
    for title, body in _option_sections(sections.after_usage):
        commands = re.findall(r"[a-z][a-z-]*", title.partition(" of ")[2])
        if title.lower().startswith("general") or words[0] in commands:
            out += ["", f"{title}:", body]
    return "\n".join(out)


def _described(text: str, command: str) -> list[str]:
    """The ``Commands:`` entries whose name starts with ``command`` (an entry: a line
    indented two spaces, then its continuation lines)."""
    out, keep = [], False
    for line in text.splitlines():
        if line and not line.startswith(" "):  # a new section
            keep = False
        elif entry := re.match(r"^  (\S.*?)(?:\s{2,}|$)", line):
            keep = entry.group(1).startswith(command) and not entry.group(1).startswith("-")
        if keep:
            out.append(line)
    return out


def _option_sections(text: str) -> list[tuple[str, str]]:
    """(heading, its indented lines) of every options section."""
    sections = []
    for mark in HEADING.finditer(text):
        lines = []
        for line in text[mark.end() :].lstrip("\n").splitlines():
            if not line.startswith(" "):
                break
            lines.append(line)
        sections.append((mark.group("title"), "\n".join(lines)))
    return sections
