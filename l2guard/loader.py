"""Read Kubernetes objects from files or stdin: multi-document YAML, a `kind: List`, or `kubectl get -o json`.

This is the file adapter shared by `l2guard explain` and the webhook's `--cluster-state` mode. Every failure is an
`InputError` with a one-line message naming the file; no parser exception escapes.

YAML aliases are bounded: a stream whose aliases, expanded, would stand for more than `MAX_ALIAS_NODES` nodes is
refused. A 651-byte "billion laughs" (nine levels of nine aliases, 9^9 strings) otherwise loads as a small shared
tree that any walk or repr expands, and took 100 s and 10.7 GB. Kubernetes manifests use aliases rarely and
shallowly (a shared label map), and `kubectl` never writes them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

import yaml

try:  # libyaml's parser and composer: 100k small objects in about 1/7 of the pure-Python loader's time
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

MAX_ALIAS_NODES = 10_000  # per stream: the nodes that aliases may repeat, counted as if expanded


MAX_INPUT_BYTES = 64 * 1024 * 1024  # characters per input: a cluster of 10,000 services is about 30 MB of JSON


class InputError(Exception):
    """Input that cannot be read or parsed; the message is one line, fit for an operator."""


class _AliasBudgetError(yaml.YAMLError):
    """The stream's aliases would expand to more than MAX_ALIAS_NODES nodes."""


def _repeated_nodes(root: yaml.Node) -> int:
    """How many nodes aliases add to the document under `root` when it is expanded as a tree: its tree size minus
    its distinct nodes. Linear in the distinct nodes (sizes are memoized per collection). Only collections are
    tracked: an alias to a scalar adds one node and cannot multiply. An alias to an enclosing collection (a cycle)
    counts as one node, since nothing here walks a cycle."""
    if isinstance(root, yaml.ScalarNode):
        return 0
    sizes: dict[yaml.Node, int] = {}  # collection -> tree size; 1 while its children are pending
    distinct = 0
    stack: list[tuple[yaml.Node, list[yaml.Node] | None]] = [(root, None)]
    while stack:
        node, kids = stack.pop()
        if kids is not None:  # its collection children are done
            size = 1
            for kid in kids:
                kid_size = sizes.get(kid)
                if kid_size is None:  # a scalar
                    size += 1
                    distinct += 1
                else:
                    size += kid_size
            sizes[node] = size
            distinct += 1
        elif node not in sizes:
            kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
            sizes[node] = 1
            stack.append((node, kids))
            stack.extend((kid, None) for kid in kids if not isinstance(kid, yaml.ScalarNode) and kid not in sizes)
    return sizes[root] - distinct


class _BoundedLoader(_SafeLoader):
    """The safe loader (libyaml's when present) that counts, per stream, the nodes aliases repeat, and refuses the
    stream past MAX_ALIAS_NODES. The count runs on the composed nodes, which both loaders hand to the (Python)
    constructor, so it works the same with either."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated = 0
        self.may_alias = "*" in stream  # every alias starts with '*': without one there is nothing to count

    def construct_document(self, node: yaml.Node) -> Any:
        if self.may_alias:
            self.repeated += _repeated_nodes(node)
            if self.repeated > MAX_ALIAS_NODES:
                raise _AliasBudgetError(f"aliases would expand to more than {MAX_ALIAS_NODES:,} nodes")
        return super().construct_document(node)


def parse_text(text: str, *, source: str) -> list[object]:
    """The documents in one file's text. JSON is tried first: it is what kubectl emits and YAML parses it slowly."""
    stripped = text.strip()
    if not stripped:
        raise InputError(f"{source}: empty input (expected Kubernetes objects as YAML or JSON)")
    if stripped[0] in "{[":
        try:
            doc = json.loads(stripped)
        except RecursionError as exc:
            raise InputError(f"{source}: JSON nested too deeply to be Kubernetes objects") from exc
        except ValueError:
            pass  # flow-style YAML also starts with { or [
        else:
            return doc if isinstance(doc, list) else [doc]
    try:
        docs = [d for d in yaml.load_all(text, Loader=_BoundedLoader) if d is not None]
    except _AliasBudgetError as exc:
        raise InputError(f"{source}: refused: YAML {exc} (an alias bomb?)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"{source}: malformed YAML{where}: {problem}") from exc
    except RecursionError as exc:
        raise InputError(f"{source}: YAML nested too deeply to be Kubernetes objects") from exc
    except ValueError as exc:  # a scalar YAML resolves but cannot build, e.g. the date 2024-02-30
        raise InputError(f"{source}: invalid YAML value: {exc}") from exc
    if not docs:
        raise InputError(f"{source}: no documents found (expected Kubernetes objects as YAML or JSON)")
    return docs


def load_documents(paths: Iterable[str]) -> list[object]:
    """Documents from each path in order; "-" reads stdin. Each input is read up to MAX_INPUT_BYTES: a larger one
    (or an endless one, /dev/zero) is refused before it fills the memory."""
    docs: list[object] = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        try:
            if path == "-":
                text = sys.stdin.read(MAX_INPUT_BYTES + 1)
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read(MAX_INPUT_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"{source}: cannot read: {reason}") from exc
        if len(text) > MAX_INPUT_BYTES:
            raise InputError(f"{source}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; refused")
        try:
            docs.extend(parse_text(text, source=source))
        except MemoryError as exc:
            raise InputError(f"{source}: too large to parse in the memory available") from exc
    return docs
