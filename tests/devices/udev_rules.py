"""A parser and a small evaluator for udev rules files, enough to check `udev/60-wirelet.rules`.

The machine's systemd may be too old for `udevadm verify` (added in systemd 253) and a container
has no udevd to run `udevadm test` against, so the syntax check and the behaviour check are done
here: `parse` rejects what udev would reject for the keys and operators we use, and `evaluate`
runs the rules over a simulated device (its subsystem, properties, attributes and parents) the
way udevd does: matches in order, GOTO/LABEL, parent keys (SUBSYSTEMS/ATTRS) matched together on
one device of the chain, `|` alternatives and shell globs, `$env{}`/`$attr{}` substitution.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r'\s*([A-Z_]+)(?:\{([^}]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)'
)
MATCH_KEYS = {
    "ACTION",
    "SUBSYSTEM",
    "SUBSYSTEMS",
    "KERNEL",
    "DRIVERS",
    "ATTR",
    "ATTRS",
    "ENV",
    "TEST",
    "TAG",
}
ASSIGN_KEYS = {
    "ENV",
    "TAG",
    "GROUP",
    "MODE",
    "OWNER",
    "SYMLINK",
    "ATTR",
    "IMPORT",
    "GOTO",
    "LABEL",
    "RUN",
}
KEYS_WITH_ATTR = {"ATTR", "ATTRS", "ENV", "IMPORT"}  # TEST{mode} is optional


class RuleSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    key: str
    attr: str | None
    op: str
    value: str


@dataclass(frozen=True)
class Rule:
    line: int
    terms: tuple[Term, ...]


def parse(text: str) -> list[Rule]:  # noqa: PLR0912 (a small udev rules lexer: one branch per token)
    """Rules of a file; raises `RuleSyntaxError` naming the line."""
    rules: list[Rule] = []
    labels: set[str] = set()
    gotos: list[tuple[int, str]] = []
    lines = text.replace("\\\n", "").splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        terms: list[Term] = []
        pos = 0
        while pos < len(line):
            m = _TOKEN.match(line, pos)
            if not m:
                raise RuleSyntaxError(f"line {number}: cannot parse at {line[pos:]!r}")
            key, attr, op, value, sep = m.groups()
            if key not in MATCH_KEYS | ASSIGN_KEYS:
                raise RuleSyntaxError(f"line {number}: unknown key {key}")
            if key != "TEST" and (key in KEYS_WITH_ATTR) != (attr is not None):
                raise RuleSyntaxError(
                    f"line {number}: {key} {'needs' if attr is None else 'takes no'} {{attribute}}"
                )
            is_match = op in ("==", "!=")
            if is_match and key not in MATCH_KEYS:
                raise RuleSyntaxError(f"line {number}: {key} cannot be matched")
            if not is_match and key not in ASSIGN_KEYS:
                raise RuleSyntaxError(f"line {number}: {key} cannot be assigned")
            terms.append(Term(key, attr, op, value))
            pos = m.end()
            if not sep and pos < len(line):
                raise RuleSyntaxError(f"line {number}: missing comma")
        if not any(t.op not in ("==", "!=") for t in terms):
            raise RuleSyntaxError(f"line {number}: a rule without an action")
        for t in terms:
            if t.key == "LABEL":
                labels.add(t.value)
            if t.key == "GOTO":
                gotos.append((number, t.value))
        rules.append(Rule(number, tuple(terms)))
    for number, label in gotos:
        if label not in labels:
            raise RuleSyntaxError(f"line {number}: GOTO to missing LABEL {label!r}")
    return rules


@dataclass
class Device:
    subsystem: str
    kernel: str = ""
    devtype: str = ""
    env: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)
    parent: Device | None = None
    action: str = "add"


@dataclass
class Outcome:
    env: dict[str, str]
    tags: set[str] = field(default_factory=set)
    symlinks: list[str] = field(default_factory=list)
    group: str | None = None
    mode: str | None = None
    attr_writes: dict[str, str] = field(default_factory=dict)
    imports: list[str] = field(default_factory=list)


def _matches(pattern: str, value: str | None) -> bool:
    value = value or ""
    return any(
        (alt == "" and value == "") or (alt != "" and fnmatch.fnmatchcase(value, alt))
        for alt in pattern.split("|")
    )


def _substitute(value: str, device: Device, env: Mapping[str, str]) -> str:
    value = re.sub(r"\$env\{([^}]*)\}", lambda m: env.get(m.group(1), ""), value)
    return re.sub(r"\$attr\{([^}]*)\}", lambda m: device.attrs.get(m.group(1), ""), value)


def _parent_ok(terms: list[Term], device: Device) -> bool:
    """SUBSYSTEMS/ATTRS/DRIVERS of one rule must all match the same device of the chain."""
    for t in terms:
        actual = device.subsystem if t.key == "SUBSYSTEMS" else device.attrs.get(t.attr or "")
        if _matches(t.value, actual) != (t.op == "=="):
            return False
    return True


def evaluate(rules: list[Rule], device: Device) -> Outcome:  # noqa: PLR0912, PLR0915 (one branch per udev match/assign key)
    out = Outcome(env=dict(device.env, SUBSYSTEM=device.subsystem, DEVTYPE=device.devtype))
    out.env = {k: v for k, v in out.env.items() if v}
    chain: list[Device] = []
    node: Device | None = device
    while node is not None:
        chain.append(node)
        node = node.parent
    skip_to: str | None = None
    for rule in rules:
        if skip_to is not None:
            if any(t.key == "LABEL" and t.value == skip_to for t in rule.terms):
                skip_to = None
            continue
        ok = True
        parent_terms = [t for t in rule.terms if t.key in ("SUBSYSTEMS", "ATTRS", "DRIVERS")]
        for t in rule.terms:
            if t.op not in ("==", "!="):
                continue
            if t.key in ("SUBSYSTEMS", "ATTRS", "DRIVERS"):
                continue
            actual: str | None
            if t.key == "ACTION":
                actual = device.action
            elif t.key == "SUBSYSTEM":
                actual = device.subsystem
            elif t.key == "KERNEL":
                actual = device.kernel
            elif t.key == "ENV":
                actual = out.env.get(t.attr or "")
            elif t.key == "ATTR":
                actual = device.attrs.get(t.attr or "")
            elif t.key == "TAG":
                ok = ok and ((t.value in out.tags) == (t.op == "=="))
                continue
            else:  # TEST: the file (relative: an attribute of the device) exists
                ok = ok and ((t.value in device.attrs) == (t.op == "=="))
                continue
            hit = _matches(t.value, actual)
            ok = ok and (hit if t.op == "==" else not hit)
        if ok and parent_terms:
            ok = any(_parent_ok(parent_terms, d) for d in chain)
        if not ok:
            continue
        for t in rule.terms:
            if t.op in ("==", "!="):
                continue
            value = _substitute(t.value, device, out.env)
            if t.key == "ENV":
                out.env[t.attr or ""] = value
            elif t.key == "TAG":
                out.tags.add(value)
            elif t.key == "SYMLINK":
                out.symlinks.append(value)
            elif t.key == "GROUP":
                out.group = value
            elif t.key == "MODE":
                out.mode = value
            elif t.key == "ATTR":
                out.attr_writes[t.attr or ""] = value
            elif t.key == "IMPORT":
                out.imports.append(f"{t.attr}:{value}")
            elif t.key == "GOTO":
                skip_to = value
    return out
