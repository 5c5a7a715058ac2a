"""Model-based data checks: likely label errors, outliers and near duplicates by content.

The rule-based checks (exact and perceptual-hash duplicates, conflicts, leakage, quality
flags) run at import (:mod:`autovision.data.report`). These need a model, so they run only
when asked (``autovision dataset check``): frozen pretrained embeddings of every image (the
search's embedding cache, so ``train`` reuses them), then

- :mod:`.label_issues`: out-of-fold probabilities from a linear head and cleanlab's
  confident learning;
- :mod:`.outliers`: nearest-neighbour distances in the embedding space;
- :mod:`.near_duplicates`: cosine similarity of embeddings (crops, flips, colour changes).

:mod:`.store` keeps the latest result of each kind per dataset version; the data report
shows them once computed.
"""
