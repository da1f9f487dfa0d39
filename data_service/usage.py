"""The command line's grammar (the ``cli`` docstring, read by docopt-ng) and its two
human faces: ``COMMAND --help`` shows that command's usage, description and options
only, and a command line that matches no usage is one line naming what is wrong (an
unknown option or command, a missing flag, a flag the command does not take), never
docopt's dump of unmatched patterns.

The docstring's options are grouped under headings ``Options of A, B, ...:`` naming the
commands that take them, and ``General options:`` for every command; its ``Commands:``
section describes each command on lines starting with its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docopt import DocoptExit, ParsedOptions, docopt, parse_docstring_sections, parse_options

HEADING = re.compile(r"^(?P<title>(?=\S)[^\n]*?options[^\n]*):[ \t]*$", re.I | re.M)
PROGRAM = "data-service"


class UsageError(Exception):
    """A command line that matches no usage; the message is one line saying why."""


class HelpShown(Exception):
    """``--help`` was answered (printed); the caller exits 0."""


def parse(doc: str, argv: list[str]) -> ParsedOptions:
    """docopt's parse of ``argv``; HelpShown after printing a command's help, UsageError
    (one line) for a command line no usage matches."""
    if {"-h", "--help"} & set(argv) and (words := _words(doc, argv)):
        print(command_help(doc, words))
        raise HelpShown
    try:
        return docopt(doc, argv)
    except DocoptExit:
        raise UsageError(explain(doc, argv)) from None


@dataclass(frozen=True)
class Usage:
    """One usage line: its command words (alternatives as sets), required options, its
    optional options, and whether it takes ``[options]``."""

    words: tuple[frozenset[str], ...]
    required: tuple[str, ...]
    optional: frozenset[str]
    any_option: bool
    text: str

    def matches(self, words: list[str]) -> bool:
        return len(words) == len(self.words) and all(w in alts for w, alts in zip(words, self.words, strict=True))

    @property
    def name(self) -> str:
        return " ".join(sorted(alts)[0] if len(alts) == 1 else "|".join(sorted(alts)) for alts in self.words)


def usages(doc: str) -> list[Usage]:
    body = parse_docstring_sections(doc).usage_body
    found = []
    for line in body.splitlines():
        tokens = line.split()
        if not tokens or tokens[0] != PROGRAM:
            continue
        text = " ".join(tokens[1:])
        head = re.match(r"^((?:\([a-z| -]+\)|[a-z][a-z-]*)(?:\s+|$))+", text)
        words = tuple(
            frozenset(w for w in word.strip("()").split("|") if w.strip()) if "(" in word else frozenset({word})
            for word in re.findall(r"\([^)]*\)|[a-z][a-z-]*", head.group(0) if head else "")
        )
        words = tuple(frozenset(w.strip() for w in alts) for alts in words)
        rest = text[head.end() :] if head else text
        required = tuple(re.findall(r"(?<![\[\w-])(--[a-z-]+(?:=[A-Z]+)?)", _outside_brackets(rest)))
        optional = frozenset(re.findall(r"--[a-z-]+", rest)) - {flag.partition("=")[0] for flag in required}
        found.append(Usage(words, required, optional, "[options]" in rest, line.strip()))
    return found


def _outside_brackets(text: str) -> str:
    out, depth = [], 0
    for char in text:
        depth += char == "["
        out.append(char if depth == 0 else " ")
        depth -= char == "]"
    return "".join(out)


def _commands(doc: str) -> set[str]:
    return {word for usage in usages(doc) for alts in usage.words for word in alts}


def _words(doc: str, argv: list[str]) -> list[str]:
    """The command words at the start of ``argv`` (options skipped)."""
    commands = _commands(doc)
    return [arg for arg in argv if not arg.startswith("-") and arg in commands]


def explain(doc: str, argv: list[str]) -> str:
    """One line: why ``argv`` matches no usage of ``doc``."""
    options = {o.longer or o.short: o for o in parse_options(parse_docstring_sections(doc).after_usage)}
    options.update({o.short: o for o in options.values() if o.short})
    given: list[str] = []
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg == "-":
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
        if name in given:
            return f"{name} is given twice"
        given.append(option.longer or name)
    return _explain_words(doc, positional, given)


def _explain_words(doc: str, positional: list[str], given: list[str]) -> str:
    lines = usages(doc)
    commands = sorted({sorted(u.words[0])[0] for u in lines if u.words})
    if not positional:
        return f"no command given: one of {', '.join(commands)} (see {PROGRAM} --help)"
    if positional[0] not in {w for u in lines if u.words for w in u.words[0]}:
        return f"unknown command {positional[0]!r}: one of {', '.join(commands)}"
    candidates = [u for u in lines if u.words and positional[0] in u.words[0]]
    for depth in range(1, len(positional) + 1):
        fitting = [u for u in candidates if len(u.words) >= depth and positional[depth - 1] in u.words[depth - 1]]
        if not fitting:
            if all(len(u.words) < depth for u in candidates):
                return f"unexpected argument {positional[depth - 1]!r} after {' '.join(positional[: depth - 1])}"
            wanted = sorted({w for u in candidates if len(u.words) >= depth for w in u.words[depth - 1]})
            before = " ".join(positional[: depth - 1])
            return f"{before}: unknown command {positional[depth - 1]!r}: one of {', '.join(wanted)}"
        candidates = fitting
    exact = [u for u in candidates if u.matches(positional)]
    if not exact:
        wanted = sorted({w for u in candidates for w in u.words[len(positional)]})
        return f"{' '.join(positional)} needs a command: one of {', '.join(wanted)}"
    return _explain_options(exact, positional, given)


def _explain_options(candidates: list[Usage], positional: list[str], given: list[str]) -> str:
    command = " ".join(positional)
    reasons = []
    for usage in candidates:
        takes = usage.optional | {flag.partition("=")[0] for flag in usage.required}
        if missing := [flag for flag in usage.required if flag.partition("=")[0] not in given]:
            reasons.append(f"{command} needs {' and '.join(missing)}")
        elif not usage.any_option and (extra := [flag for flag in given if flag not in takes]):
            reasons.append(f"{command} does not take {', '.join(extra)}")
    reason = reasons[0] if reasons else f"these arguments match no usage of {command}"
    return f"{reason} (see {PROGRAM} {command} --help)"


def command_help(doc: str, words: list[str]) -> str:
    """The usage lines, description and options of the command ``words`` names."""
    sections = parse_docstring_sections(doc)
    mine = [u.text for u in usages(doc) if u.words and all(w in alts for w, alts in zip(words, u.words, strict=False))]
    out = ["Usage:", *(f"  {line}" for line in mine)]
    described = _described(sections.after_usage, " ".join(words))
    if described:
        out += ["", *described]
    for title, body in _option_sections(sections.after_usage):
        if title.lower().startswith("general") or words[0] in re.findall(r"[a-z][a-z-]*", title.partition(" of ")[2]):
            out += ["", f"{title}:", body.rstrip("\n")]
    return "\n".join(out)


def _described(text: str, command: str) -> list[str]:
    """The ``Commands:`` entries whose name starts with ``command``."""
    lines = text.splitlines()
    out, keep = [], False
    for line in lines:
        if line and not line.startswith(" "):  # a new section
            keep = False
            continue
        entry = re.match(r"^  (\S.*?)(?:\s{2,}|$)", line)
        if entry:
            keep = entry.group(1).startswith(command) and not entry.group(1).startswith("-")
        if keep:
            out.append(line)
    return out


def _option_sections(text: str) -> list[tuple[str, str]]:
    marks = list(HEADING.finditer(text))
    sections = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end() : end]
        body = body.split("\n\n", 1)[0] if not body.lstrip("\n").startswith("  ") else body
        sections.append((mark.group("title"), _until_unindented(body)))
    return sections


def _until_unindented(body: str) -> str:
    lines = []
    for line in body.lstrip("\n").splitlines():
        if line and not line.startswith(" "):
            break
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)
