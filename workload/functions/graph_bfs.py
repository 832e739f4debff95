"""Benchmark function ``graph-bfs``: breadth-first search over a generated scale-free graph.

Parameters: ``nodes`` (default 10000), ``edges_per_node`` (default 4), ``source`` (default 0),
``seed`` (default 0). Dependency: ``networkx`` (PyPI).
"""

import networkx as nx


def main(args):
    nodes = int(args.get("nodes", 10000))
    m = int(args.get("edges_per_node", 4))
    source = int(args.get("source", 0))
    if not (1 <= m < nodes <= 1_000_000 and 0 <= source < nodes):
        return {"error": f"need 1 <= edges_per_node < nodes <= 1000000 and 0 <= source < nodes; got {m}, {nodes}, {source}"}
    graph = nx.barabasi_albert_graph(nodes, m, seed=int(args.get("seed", 0)))
    depth = {source: 0}
    frontier = [source]
    order = 0
    while frontier:
        following = []
        for node in frontier:
            order += 1
            for neighbour in graph.adj[node]:
                if neighbour not in depth:
                    depth[neighbour] = depth[node] + 1
                    following.append(neighbour)
        frontier = following
    levels = {}
    for d in depth.values():
        levels[d] = levels.get(d, 0) + 1
    return {"nodes": nodes, "reached": order, "depth": max(levels), "per_level": [levels[d] for d in sorted(levels)]}
