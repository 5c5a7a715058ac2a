"""One module per page group, each with a ``router`` (an ``APIRouter``); ``create_app``
includes them in this order. Wave 1: the login pages and the datasets pages."""

ROUTERS = ["session", "datasets", "train"]
