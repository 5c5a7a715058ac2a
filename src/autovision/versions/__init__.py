"""Named models and their versions (not the backbone registry in :mod:`autovision.models`)."""
