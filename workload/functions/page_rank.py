"""Benchmark function ``page-rank``: PageRank of a generated scale-free graph (Barabási-Albert).

Parameters: ``nodes`` (default 5000), ``edges_per_node`` (default 4), ``seed`` (default 0), ``top``
(how many highest-ranked nodes to return, default 5). Dependency: ``networkx`` (PyPI; its PageRank
uses scipy).
"""

import networkx as nx


def main(args):
    nodes = int(args.get("nodes", 5000))
    m = int(args.get("edges_per_node", 4))
    if not (2 <= m < nodes <= 1_000_000):
        return {"error": f"need 2 <= edges_per_node < nodes <= 1000000, got {m} and {nodes}"}
    graph = nx.barabasi_albert_graph(nodes, m, seed=int(args.get("seed", 0)))
    ranks = nx.pagerank(graph, alpha=0.85, tol=1e-8)
    best = sorted(ranks.items(), key=lambda item: item[1], reverse=True)[: int(args.get("top", 5))]
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "rank_sum": sum(ranks.values()),
        "top": [{"node": int(n), "rank": r} for n, r in best],
    }
