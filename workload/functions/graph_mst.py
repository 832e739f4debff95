"""Benchmark function ``graph-mst``: minimum spanning tree (Kruskal) of a generated weighted graph.

Parameters: ``nodes`` (default 5000), ``edges_per_node`` (default 4), ``seed`` (default 0: graph and
weights). Dependency: ``networkx`` (PyPI).
"""

import random

import networkx as nx


def main(args):
    nodes = int(args.get("nodes", 5000))
    m = int(args.get("edges_per_node", 4))
    if not (1 <= m < nodes <= 1_000_000):
        return {"error": f"need 1 <= edges_per_node < nodes <= 1000000, got {m} and {nodes}"}
    seed = int(args.get("seed", 0))
    graph = nx.barabasi_albert_graph(nodes, m, seed=seed)
    rng = random.Random(seed + 1)
    for u, v in graph.edges():
        graph[u][v]["weight"] = rng.random()
    tree = nx.minimum_spanning_tree(graph, weight="weight", algorithm="kruskal")
    return {
        "nodes": nodes,
        "edges": graph.number_of_edges(),
        "tree_edges": tree.number_of_edges(),
        "total_weight": tree.size(weight="weight"),
    }
