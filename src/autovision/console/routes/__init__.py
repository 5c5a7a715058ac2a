"""One module per page group, each with a ``router`` (an ``APIRouter``); ``create_app``
includes them in this order."""

ROUTERS = [
    "session",
    "datasets",
    "dataset_version",
    "train",
    "models",
    "deploy",
    "monitor",
    "label",
    "usage",
]
