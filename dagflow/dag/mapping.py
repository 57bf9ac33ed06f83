"""Dynamic fan-out (``map``): instance ids, the map reference, and a parent output's list (pure).

A task with ``map: PARENT.KEY`` runs as one **instance** per item of the list under ``KEY``
in its direct parent ``PARENT``'s output. The number of instances is known only when the
parent ends, so the parent's finish records it (:func:`map_length`) in the same atomic
write that commits the parent's output, and the store expands the task when its trigger
rule is met.

Instances are named ``TASK[INDEX]`` (``process[3]``): task ids cannot contain ``[``, so an
instance id never names a task of the DAG. Each instance gets its item as the param
``item`` and its index as the run context's ``map_index``; the task's children receive
``TASK__results``, the instances' outputs in item order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The param an instance receives its item under (a mapped task may not declare it).
ITEM_PARAM = "item"
#: The output key of a mapped task: the list of its instances' outputs.
RESULTS_KEY = "results"
#: ``DAGFLOW_MAP_MAX``'s default: most instances one mapped task may have.
MAP_MAX_DEFAULT = 10_000

_INSTANCE = re.compile(r"^(?P<task>.+)\[(?P<index>\d+)\]$")


def instance_id(task_id: str, index: int) -> str:
    """The id of instance ``index`` of the mapped task ``task_id`` (``process[3]``)."""
    return f"{task_id}[{index}]"


@functools.lru_cache(maxsize=1024)
def split_instance(task_id: str) -> tuple[str, int | None]:
    """``(task, index)`` of an instance id; ``(task_id, None)`` for any other task id.

    Kept for the ids seen last: one step asks for its own some twenty times."""
    found = _INSTANCE.match(task_id)
    if found is None:
        return task_id, None
    return found["task"], int(found["index"])


def base_task_id(task_id: str) -> str:
    """The DAG task an id names: the mapped task for an instance, else the id itself."""
    return split_instance(task_id)[0]


def parse_map_ref(ref: str, parents: Sequence[str]) -> tuple[str, str] | None:
    """Split ``PARENT.KEY`` against the task's direct ``parents``; None if none matches.

    Task ids may contain ``.``, so the longest parent id followed by ``.`` and a non-empty
    key wins (``a.b.files`` with parents ``a`` and ``a.b`` maps over ``files`` of ``a.b``).
    """
    best: tuple[str, str] | None = None
    for parent in parents:
        prefix = f"{parent}."
        longer = best is None or len(parent) > len(best[0])
        if ref.startswith(prefix) and len(ref) > len(prefix) and longer:
            best = (parent, ref[len(prefix) :])
    return best


def map_length(
    task_id: str, parent: str, key: str, output: Any, limit: int = MAP_MAX_DEFAULT
) -> int | str:
    """How many instances ``task_id`` gets from its parent's ``output``, or why it fails.

    Returns:
        The list's length, or a one-line error naming the task, the key and what was
        found (a missing key, a value that is not a list, a list over ``limit``).
    """
    where = f"Task '{task_id}' maps over {parent}.{key}"
    if not isinstance(output, Mapping) or key not in output:
        found = "it returned no mapping" if not isinstance(output, Mapping) else "no such key"
        return f"MapError: {where}, but the output of '{parent}' has {found}"
    value = output[key]
    if not isinstance(value, list):
        return f"MapError: {where}, but it holds {type(value).__name__}, not a list"
    if len(value) > limit:
        return f"MapError: {where}, a list of {len(value)} items, over DAGFLOW_MAP_MAX ({limit})"
    return len(value)


def map_item(output: Any, key: str, index: int) -> Any:
    """The item instance ``index`` receives from its map parent's parsed ``output``.

    Raises:
        LookupError: The output has no such list or item (it changed after expansion:
            cannot happen for a committed output, whose value never changes).
    """
    value = output[key] if isinstance(output, Mapping) else None
    if not isinstance(value, list) or index >= len(value):
        raise LookupError(f"the map parent's output has no item {index} under {key!r}")
    return value[index]


def results_json(outputs: Sequence[str | None]) -> str:
    """The output JSON of a mapped task from its instances' output JSON, in item order
    (``null`` for an instance that did not succeed); the store builds the same string."""
    return '{"results":[' + ",".join(o if o else "null" for o in outputs) + "]}"
