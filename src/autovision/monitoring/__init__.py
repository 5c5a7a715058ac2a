"""Monitoring: the prediction log (``log``), drift detection, the review queue."""
