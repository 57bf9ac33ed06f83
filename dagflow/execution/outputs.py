"""Outputs by reference: large outputs live in the output store, the run store keeps a reference.

An output whose JSON is at most ``DAGFLOW_OUTPUT_INLINE_MAX`` bytes (64 KiB) is kept in the
run store as before. A larger one is written to the output store
(:class:`~dagflow.stores.output_store.OutputStore`, ``DAGFLOW_OUTPUT_STORE``) under the
attempt's fencing number, and the run store keeps only a **reference**, a small JSON object::

    {"__dagflow_ref__": "s3://bucket/prefix/<run>/<task>/<fence>.json", "run": "<run>",
     "task": "<task>", "bytes": 52428800}

Whoever reads an output resolves references (:meth:`Outputs.load`): a worker merging a
child's params (:func:`dagflow.execution.fanout.upstream_values`, which keeps a map
parent's resolved list once per process), :meth:`RunHandle.outputs` and ``dagflow
outputs``; so workflows see the same values as with inline outputs. A mapped task's
``results`` hold its instances' stored outputs, references included, and are resolved the
same way. ``__dagflow_ref__`` is therefore a reserved key: a workflow must not return a
mapping with it.

Over ``DAGFLOW_OUTPUT_MAX`` (256 MiB) the task fails at once, without a retry
(:class:`~dagflow.errors.OutputTooLargeError`); so does an output over the inline limit
when no output store is set (a broker without ``DAGFLOW_OUTPUT_STORE``).

Objects are deleted when their run's state expires: each run that writes one is tracked in
an :class:`~dagflow.stores.output_index.OutputIndex` *before* the write, and the sweeper's
hook :func:`sweep_outputs` deletes the run's folder once it is due. ``dagflow retry``
**copies** the objects of the outputs it reuses into the new run's folder
(:meth:`Outputs.copy_reused`: a server-side copy on object stores), so every object belongs
to exactly one run and dies with it; a retry never depends on the old run's expiry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagflow.errors import OutputStoreError, OutputTooLargeError, WorkflowOutputError
from dagflow.execution.secrets import NO_SECRETS, Redactor
from dagflow.stores.output_index import MemoryOutputIndex, OutputIndex
from dagflow.stores.output_store import OutputStore, read_object

if TYPE_CHECKING:
    from dagflow.settings import Settings

logger = logging.getLogger(__name__)

#: The key that marks a reference (reserved: never a key of a workflow's output).
REF_KEY = "__dagflow_ref__"
#: Runs one sweep deletes the objects of, at most.
SWEEP_RUNS = 100


def encode_output(task_id: str, value: Any) -> str:
    """Serialize a workflow's return value to JSON.

    Raises:
        WorkflowOutputError: The value holds something JSON cannot encode.
    """
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkflowOutputError(
            f"Task '{task_id}' returned a value that is not JSON-serializable: {exc}"
        ) from None


def is_ref(value: Any) -> bool:
    """True for a reference object (see the module docstring)."""
    return isinstance(value, dict) and REF_KEY in value and isinstance(value[REF_KEY], str)


def _refs(value: Any) -> list[dict[str, Any]]:
    """Every reference in a parsed output (a mapped task's ``results`` may hold many)."""
    if is_ref(value):
        return [value]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _replace(value: Any, found: Mapping[int, Any]) -> Any:
    """``value`` with each reference (by ``id``) replaced by ``found``'s value for it."""
    if is_ref(value):
        return found[id(value)]
    if isinstance(value, dict):
        return {k: _replace(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, found) for v in value]
    return value


@dataclass
class Outputs:
    """Encodes, stores and resolves outputs for one process.

    Attributes:
        inline_max: ``DAGFLOW_OUTPUT_INLINE_MAX`` in bytes.
        output_max: ``DAGFLOW_OUTPUT_MAX`` in bytes.
        ttl_s: ``DAGFLOW_RUN_TTL_S``: how long a run's objects are kept after a write.
        store: The output store, or None (a broker without ``DAGFLOW_OUTPUT_STORE``).
        index: Where runs with objects are tracked for the sweep.
    """

    inline_max: int
    output_max: int
    ttl_s: float
    store: OutputStore | None
    index: OutputIndex

    @classmethod
    def from_settings(cls, settings: Settings, index: OutputIndex | None = None) -> Outputs:
        """From the process's settings (an in-memory index unless one is given)."""
        url = settings.output_store_url
        return cls(
            inline_max=settings.output_inline_max,
            output_max=settings.output_max,
            ttl_s=float(settings.run_ttl_s),
            store=OutputStore(url) if url else None,
            index=index if index is not None else MemoryOutputIndex(),
        )

    def encode(
        self,
        run_id: str,
        task_id: str,
        fence: int,
        value: Any,
        redactor: Redactor = NO_SECRETS,
    ) -> str:
        """The JSON the run store keeps for a workflow's return value: the output itself,
        redacted, or a reference to the object it was written to.

        Raises:
            WorkflowOutputError: The value is not JSON.
            OutputTooLargeError: Over ``DAGFLOW_OUTPUT_MAX``, or over the inline limit with
                no output store (no retry).
            OutputStoreError: The object could not be written (an attempt may retry).
        """
        text = encode_output(task_id, value)
        if redactor:
            text = redactor.redact(text)
        if len(text) * 4 <= self.inline_max:  # at most 4 bytes a character: surely inline
            return text
        data = text.encode()
        size = len(data)
        if size > self.output_max:
            raise OutputTooLargeError(
                f"Task '{task_id}' returned {size} bytes of JSON, over DAGFLOW_OUTPUT_MAX "
                f"({self.output_max})"
            )
        if size <= self.inline_max:
            return text
        if self.store is None:
            raise OutputTooLargeError(
                f"Task '{task_id}' returned {size} bytes of JSON, over "
                f"DAGFLOW_OUTPUT_INLINE_MAX ({self.inline_max}), and DAGFLOW_OUTPUT_STORE is "
                "not set to hold it"
            )
        # Tracked before the write: a writer killed mid-way leaves a .tmp the sweep removes.
        self.index.track(run_id, self.ttl_s)
        url = self.store.put(run_id, task_id, fence, data)
        ref = {REF_KEY: url, "run": run_id, "task": task_id, "bytes": size}
        return json.dumps(ref, separators=(",", ":"))

    def discard(self, output: str | None) -> None:
        """Delete the object of an output whose commit was refused (a late holder's); best
        effort: the run's sweep deletes it anyway."""
        if output is None or REF_KEY not in output or self.store is None:
            return
        try:
            value = json.loads(output)
            if is_ref(value):
                self.store.delete(value[REF_KEY])
        except (ValueError, OutputStoreError) as exc:
            logger.warning("dagflow: could not delete a discarded output: %s", exc)

    def load(self, raw: str) -> Any:
        """Parse an output the run store holds, reading the objects it refers to.

        Raises:
            OutputMissingError: A referenced object is gone (names run, task and URL).
            OutputStoreError: The store could not be read.
        """
        value = json.loads(raw)
        if REF_KEY not in raw:
            return value
        refs = _refs(value)
        if not refs:
            return value
        found = {
            id(ref): json.loads(read_object(ref[REF_KEY], str(ref["run"]), str(ref["task"])))
            for ref in refs
        }
        return _replace(value, found)

    def copy_reused(self, reused: Mapping[str, str], run_id: str) -> dict[str, str]:
        """A retry's reused outputs with each object copied into the new run ``run_id``'s
        folder (see the module docstring); inline outputs are returned as they are.

        Raises:
            OutputMissingError: An object of the old run is gone.
            OutputStoreError: No output store is set, or the copy failed.
        """
        out = dict(reused)
        for task_id, raw in reused.items():
            if REF_KEY not in raw:
                continue
            value = json.loads(raw)
            refs = _refs(value)
            if not refs:
                continue
            if self.store is None:
                raise OutputStoreError(
                    f"task '{task_id}' of the run to retry has its output in an output store: "
                    "set DAGFLOW_OUTPUT_STORE to copy it into the retry"
                )
            self.index.track(run_id, self.ttl_s)
            copies: dict[int, Any] = {}
            for ref in refs:
                source_task = str(ref.get("task", task_id))
                url = self.store.copy(ref[REF_KEY], run_id, source_task)
                copies[id(ref)] = {**ref, REF_KEY: url, "run": run_id}
            out[task_id] = json.dumps(_replace(value, copies), separators=(",", ":"))
        return out

    def purge(self) -> int:
        """Delete the objects of every run this index tracks (the embedded runner's close:
        its runs die with it); returns how many runs."""
        return self._delete(self.index.runs())

    def sweep(self, limit: int = SWEEP_RUNS) -> int:
        """Delete the objects of runs whose state expired; returns how many runs."""
        if self.store is None:
            return 0  # this process cannot reach the store: one that can will
        return self._delete(self.index.due(limit))

    def _delete(self, runs: list[str]) -> int:
        if self.store is None:
            return 0
        done = 0
        for run_id in runs:
            try:
                self.store.delete_run(run_id)
            except OutputStoreError as exc:  # the next sweep tries again
                logger.warning("dagflow: %s", exc)
                continue
            self.index.forget(run_id)
            done += 1
        return done


def sweep_outputs(app: Any, rt: Any) -> int:
    """The sweep hook (see :attr:`Runtime.sweep_hooks`): delete the objects of expired runs."""
    outputs: Outputs | None = getattr(rt, "outputs", None)
    return outputs.sweep() if outputs is not None else 0
