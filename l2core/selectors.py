"""Kubernetes label selectors: parsing with field-addressed problems, and matching.

Semantics follow apimachinery's `metav1.LabelSelector`: `matchLabels` and `matchExpressions` are ANDed; operators
are In, NotIn, Exists and DoesNotExist. NotIn and DoesNotExist also match objects that lack the key. An empty
selector matches everything. Keys and values are checked against the qualified-name and label-value rules of
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set .

No I/O, no logging, standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from l2core.problems import Problem
from l2core.text import and_more, shown

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def label_key_error(key: object) -> str | None:
    """Why `key` is not a valid label key, or None when it is."""
    if not isinstance(key, str) or not key:
        return "label key must be a non-empty string"
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"label key {shown(key)} has an invalid prefix (must be a DNS subdomain of at most 253 characters)"
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            f"label key {shown(key)} is invalid (name part: at most 63 characters, alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric)"
        )
    return None


def label_value_error(value: object) -> str | None:
    """Why `value` is not a valid label value, or None when it is."""
    if not isinstance(value, str):
        return "label value must be a string"
    if value == "":
        return None
    if len(value) > 63 or not _NAME.match(value):
        return (
            f"label value {shown(value)} is invalid (at most 63 characters, alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric)"
        )
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # one of OPERATORS
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed selector. `match_labels` is kept as sorted pairs so that selectors compare and hash by value."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.expressions)

    def describe(self) -> str:
        """kubectl-style text: `a=b,c in (x,y),!d`."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for req in self.expressions:
            values = ",".join(sorted(req.values))
            if req.operator == "In":
                parts.append(f"{req.key} in ({values})")
            elif req.operator == "NotIn":
                parts.append(f"{req.key} notin ({values})")
            elif req.operator == "Exists":
                parts.append(req.key)
            else:
                parts.append(f"!{req.key}")
        return ",".join(parts) or "<everything>"


def parse_selector(raw: object, *, obj: str, path: str) -> tuple[LabelSelector | None, list[Problem]]:
    """Parse a `metav1.LabelSelector` dict. Returns (selector or None when unusable, problems)."""
    problems: list[Problem] = []
    if raw is None:
        return LabelSelector(), problems
    if not isinstance(raw, Mapping):
        return None, [Problem(obj, path, "label selector must be an object with matchLabels/matchExpressions")]
    unknown = [shown(k) for k in raw if k not in ("matchLabels", "matchExpressions")]
    if unknown:
        problems.append(Problem(obj, path, f"unknown selector field(s): {and_more(sorted(unknown), 5)}"))

    labels: list[tuple[str, str]] = []
    raw_labels: Any = raw.get("matchLabels") or {}
    if not isinstance(raw_labels, Mapping):
        problems.append(Problem(obj, f"{path}.matchLabels", "must be a map of label key to value"))
    else:
        for key, value in raw_labels.items():
            key_err = label_key_error(key)
            where = f"{path}.matchLabels[{shown(key) if key_err else key}]"  # a valid key is short and plain
            err = key_err or label_value_error(value)
            if err:
                problems.append(Problem(obj, where, err))
            else:
                labels.append((key, value))

    reqs: list[Requirement] = []
    seen_reqs: set[Requirement] = set()
    raw_exprs: Any = raw.get("matchExpressions") or []
    if not isinstance(raw_exprs, list):
        problems.append(Problem(obj, f"{path}.matchExpressions", "must be a list"))
        raw_exprs = []
    for i, expr in enumerate(raw_exprs):
        where = f"{path}.matchExpressions[{i}]"
        req, req_problems = _parse_requirement(expr, obj=obj, path=where)
        problems.extend(req_problems)
        if req is not None:
            if req in seen_reqs:  # hashed: list membership made 20,000 expressions quadratic
                problems.append(Problem(obj, where, f"duplicate expression for key {shown(req.key)}"))
            seen_reqs.add(req)
            reqs.append(req)

    if problems:
        return None, problems
    return LabelSelector(tuple(sorted(labels)), tuple(reqs)), problems


def _parse_requirement(raw: object, *, obj: str, path: str) -> tuple[Requirement | None, list[Problem]]:
    if not isinstance(raw, Mapping):
        return None, [Problem(obj, path, "must be an object with key, operator and values")]
    problems: list[Problem] = []
    key = raw.get("key")
    err = label_key_error(key)
    if err:
        problems.append(Problem(obj, f"{path}.key", err))
    operator = raw.get("operator")
    if operator not in OPERATORS:
        problems.append(
            Problem(obj, f"{path}.operator", f"{shown(operator)} is not a valid operator (use {', '.join(OPERATORS)})")
        )
    values_raw = raw.get("values")
    values: list[str] = []
    seen_values: set[str] = set()
    if values_raw is None:
        values_raw = []
    if not isinstance(values_raw, list):
        problems.append(Problem(obj, f"{path}.values", "must be a list of strings"))
        values_raw = []
    for j, value in enumerate(values_raw):
        verr = label_value_error(value)
        if verr:
            problems.append(Problem(obj, f"{path}.values[{j}]", verr))
        elif value in seen_values:  # hashed, as above
            problems.append(Problem(obj, f"{path}.values[{j}]", f"duplicate value {shown(value)}"))
        else:
            seen_values.add(value)
            values.append(value)
    if operator in ("In", "NotIn") and not values_raw:
        problems.append(Problem(obj, f"{path}.values", f"operator {operator} needs at least one value"))
    if operator in ("Exists", "DoesNotExist") and values_raw:
        problems.append(Problem(obj, f"{path}.values", f"operator {operator} takes no values"))
    if problems:
        return None, problems
    assert isinstance(key, str) and isinstance(operator, str)
    return Requirement(key, operator, frozenset(values)), problems
