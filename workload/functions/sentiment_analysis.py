"""Benchmark function ``sentiment-analysis``: score sentences with VADER (rule- and lexicon-based;
the lexicon ships inside the package, nothing is downloaded).

Parameters: ``sentences`` (default 300 generated review-like sentences), ``seed`` (default 0), or
``text`` (one string; scored sentence by sentence). Dependency: ``vaderSentiment`` (PyPI).
"""

import random
import re

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# Built once per container (part of the cold start), as a real deployment would.
_ANALYZER = SentimentIntensityAnalyzer()
_SUBJECTS = ["the service", "this function", "the latency", "our cluster", "the new release", "support"]
_OPINIONS = ["is great", "is terrible", "was okay", "is really not good", "is amazing!!", "could be better",
             "is wonderfully fast", "is painfully slow", "did not disappoint", "is a total disaster :("]
_TAILS = ["", " today", " honestly", " but the docs are bad", " and I love it", " overall"]


def _sentences(n, rng):
    return [f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_OPINIONS)}{rng.choice(_TAILS)}." for _ in range(n)]


def main(args):
    text = args.get("text")
    if text is not None:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", str(text)) if s.strip()]
    else:
        n = int(args.get("sentences", 300))
        if not (1 <= n <= 1_000_000):
            return {"error": f"sentences must be in [1, 1000000], got {n}"}
        sentences = _sentences(n, random.Random(int(args.get("seed", 0))))
    scores = [_ANALYZER.polarity_scores(s)["compound"] for s in sentences]
    positive = sum(1 for c in scores if c >= 0.05)
    negative = sum(1 for c in scores if c <= -0.05)
    return {
        "sentences": len(scores),
        "mean_compound": sum(scores) / len(scores) if scores else 0.0,
        "positive": positive,
        "negative": negative,
        "neutral": len(scores) - positive - negative,
    }
