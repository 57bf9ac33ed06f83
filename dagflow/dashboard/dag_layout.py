"""Where each task of a DAG is drawn: layers from left to right, few crossings (pure).

A small Sugiyama-style layout: every task goes in the layer of its longest path from a
root (so each edge points right), then the tasks of each layer are ordered by the mean
position of their neighbours in the layer before (the barycenter heuristic), sweeping down
and up a few times and keeping the order with the fewest crossings. Good enough for the
tens of tasks a DAG has; no graph library needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Down-and-up sweeps of the barycenter ordering.
SWEEPS = 4


def levels(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth of each node; nodes caught in a cycle stay at depth 0."""
    level = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):  # Bellman-Ford style relaxation: bounded, cycle-safe
        changed = False
        for parent, child in edges:
            if level[child] < level[parent] + 1 <= len(nodes):
                level[child] = level[parent] + 1
                changed = True
        if not changed:
            break
    return level


def _centred(layers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Each node's vertical position: layers are centred on 0, one unit between nodes."""
    return {n: i - (len(layer) - 1) / 2 for layer in layers for i, n in enumerate(layer)}


def crossings(layers: Sequence[Sequence[str]], edges: Sequence[tuple[str, str]]) -> int:
    """Count pairs of edges that cross between the same two layers."""
    y = _centred(layers)
    level = {n: depth for depth, layer in enumerate(layers) for n in layer}
    drawn = [(a, b) for a, b in edges if a in y and b in y]
    count = 0
    for i, (a, b) in enumerate(drawn):
        for c, d in drawn[i + 1 :]:
            same_span = level[a] == level[c] and level[b] == level[d]
            if same_span and (y[a] - y[c]) * (y[b] - y[d]) < 0:
                count += 1
    return count


def _sweep(
    layers: list[list[str]], neighbours: Mapping[str, Sequence[str]], order: range
) -> list[list[str]]:
    layers = [list(layer) for layer in layers]
    for depth in order:
        y = _centred(layers)
        index = {n: i - (len(layers[depth]) - 1) / 2 for i, n in enumerate(layers[depth])}

        def barycenter(
            node: str, _index: Mapping[str, float] = index, _y: Mapping[str, float] = y
        ) -> float:
            around = [_y[n] for n in neighbours.get(node, ()) if n in _y]
            return sum(around) / len(around) if around else _index[node]

        layers[depth].sort(key=barycenter)  # stable: ties keep their order
    return layers


def layered_positions(
    nodes: Sequence[str], edges: Sequence[tuple[str, str]]
) -> dict[str, tuple[float, float]]:
    """Place ``nodes`` (in their preferred top-to-bottom order) left to right by layer.

    Returns:
        ``{node: (x, y)}``: ``x`` is the layer (0 for roots), ``y`` the position in the
        layer (0 at the centre, decreasing downwards).
    """
    level = levels(nodes, edges)
    depth = max(level.values(), default=0)
    layers: list[list[str]] = [[] for _ in range(depth + 1)]
    for node in nodes:
        layers[level[node]].append(node)
    parents: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for parent, child in edges:
        parents.setdefault(child, []).append(parent)
        children.setdefault(parent, []).append(child)
    best, fewest = layers, crossings(layers, edges)
    for _ in range(SWEEPS):
        if fewest == 0:
            break
        layers = _sweep(layers, parents, range(1, depth + 1))
        layers = _sweep(layers, children, range(depth - 1, -1, -1))
        count = crossings(layers, edges)
        if count < fewest:
            best, fewest = layers, count
    y = _centred(best)
    return {n: (float(level[n]), -y[n]) for n in nodes}
