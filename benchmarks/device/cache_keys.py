"""Why a warmed node compiled again: compare the compile-cache keys of a warm-up with those of a later run.

Inductor's FX graph cache and AOTAutograd's cache find a compiled graph by a key hashed from its parts (the graph,
its example inputs, the Inductor config, grad mode, matmul settings, the torch version, the system ...); with
``TORCH_LOGS="+torch._inductor.codecache,+torch._functorch._aot_autograd.autograd_cache"`` and ``TORCH_LOGS_OUT``
each process writes every key it computes with each part's own hash. A key the later run computed that the warm-up
never did is a graph it could not find; the parts whose hashes the warm-up never saw say why (``gm`` and
``example_inputs``: a different graph or shapes; anything else: a setting that differs between the processes).

    python3 benchmarks/device/cache_keys.py WARM_LOG LATER_LOG [--out summary.json]

``batch_run.sh`` writes both logs when ``BATCH_RUN_KEYS=1`` and prints this summary at the end of the job.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TORCH_LOGS", "KeyBlock", "compare", "parse", "read"]

#: ``TORCH_LOGS`` for a process whose keys are to be compared (with ``TORCH_LOGS_OUT`` naming its log file).
TORCH_LOGS = "+torch._inductor.codecache,+torch._functorch._aot_autograd.autograd_cache"
_HEADER = re.compile(r"\] (\[\d+/\d+\]) (Autograd|FX) graph cache hash details for key (\w+):")
_PART = re.compile(r"\] (\[\d+/\d+\]) \[([a-z0-9]{40,60})\] ([A-Za-z_][\w.]*(?:\[[^\]]*\])?): ?(.*)$")
_VALUE = 1000  # characters of a part's value kept (a graph's code is long; tensor metadata and settings are short)
_FIELD = re.compile(r"(\w+)=((?:[^,()]|\([^()]*\))+)")  # name=value pairs of a logged record (nested parens once)


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """One cache key a process computed: which cache (``Autograd`` or ``FX``), the key, its parts' hashes, and the
    start of each part's value as logged (its first line)."""

    cache: str
    key: str
    parts: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)


def parse(text: str) -> list[KeyBlock]:
    """Every key block of a ``TORCH_LOGS_OUT`` log, in order (a part line belongs to the last header of its
    compile id, ``[frame/compile]``; values that span lines are skipped, their hash is on the part's line)."""
    blocks: list[KeyBlock] = []
    open_blocks: dict[str, KeyBlock] = {}
    for line in text.splitlines():
        header = _HEADER.search(line)
        if header:
            block = KeyBlock(header.group(2), header.group(3), {})
            blocks.append(block)
            open_blocks[header.group(1)] = block
            continue
        part = _PART.search(line)
        if part and part.group(1) in open_blocks:
            block = open_blocks[part.group(1)]
            block.parts[part.group(3)] = part.group(2)
            block.values[part.group(3)] = part.group(4)[:_VALUE]
    return blocks


def read(path: Path) -> list[KeyBlock]:
    """``parse`` of the log file ``path`` (no blocks when the process wrote none)."""
    return parse(path.read_bytes().decode("utf-8", "replace")) if path.is_file() else []


def compare(warm: list[KeyBlock], later: list[KeyBlock]) -> dict[str, object]:
    """What the later run computed that the warm-up did not: per cache, the keys new to it, for those the parts
    (name: count of new keys) whose hash no key of the warm-up had, and for each such part other than the graph
    itself (``gm``) the value the later run logged beside the warm-up's for the same graph (``values``); where
    both are records (``TensorMetadata(dtype=..., is_inference=...)``), ``fields`` names the ones that differ."""
    summary: dict[str, object] = {}
    for cache in ("Autograd", "FX"):
        known: set[str] = set()
        seen: dict[str, set[str]] = {}
        by_graph: dict[str, KeyBlock] = {}
        for block in warm:
            if block.cache == cache:
                known.add(block.key)
                by_graph.setdefault(block.parts.get("gm", ""), block)
                for name, digest in block.parts.items():
                    seen.setdefault(name, set()).add(digest)
        mine = [block for block in later if block.cache == cache]
        new = [block for block in mine if block.key not in known]
        differing: Counter[str] = Counter()
        fields: Counter[str] = Counter()
        values: dict[str, dict[str, object]] = {}
        for block in new:
            twin = by_graph.get(block.parts.get("gm", ""))  # the warm-up's key of the same graph, if any
            for name, digest in block.parts.items():
                if digest in seen.get(name, set()):
                    continue
                differing[name] += 1
                before = twin.values.get(name, "") if twin else ""
                changed = _changed_fields(before, block.values.get(name, ""))
                fields.update(changed)
                if name != "gm" and name not in values:
                    values[name] = {"later": block.values.get(name, ""), "warm": before, "fields": changed}
        summary[cache] = {
            "warm_keys": len(known),
            "later_keys": len({block.key for block in mine}),
            "new_keys": len({block.key for block in new}),
            "parts_new_to_the_warm_up": dict(differing.most_common()),
            "fields_that_differ": dict(fields.most_common()),
            "values": values,
        }
    return summary


def _changed_fields(before: str, after: str) -> list[str]:
    """The ``name=value`` fields of two logged records whose values differ (``[]`` when either is no record)."""
    old, new = dict(_FIELD.findall(before)), dict(_FIELD.findall(after))
    return sorted(name for name in old.keys() & new.keys() if old[name] != new[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warm", type=Path, help="the warm-up's TORCH_LOGS_OUT file")
    parser.add_argument("later", type=Path, help="the later run's TORCH_LOGS_OUT file")
    parser.add_argument("--out", type=Path, help="also write the summary here")
    args = parser.parse_args()
    summary = compare(read(args.warm), read(args.later))
    text = json.dumps(summary, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
