"""Monitoring: the prediction log, drift detection, the review queue."""
