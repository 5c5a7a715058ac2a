"""The web console: the workflow in a browser, over the same library functions as the CLI.

Server-rendered Jinja2 pages with htmx (vendored in ``static/``, no Node, no network at run
time). ``autovision console`` serves :func:`create_app`; users and roles are in
:mod:`autovision.console.auth`, the Host/Origin checks and headers in
:mod:`autovision.console.security`.

Adding a page (the pattern every page follows)
----------------------------------------------
1. If the page does something the library cannot do yet, add it to the library first (a
   page is a thin layer, like a CLI command).
2. Give each new action a line in ``auth.ACTIONS`` (action -> roles) and in
   ``tests/console/test_auth.py``'s table test. Reading pages use ``"read"``.
3. Write ``routes/PAGE.py`` with ``router = APIRouter()``; each route takes
   ``user: Annotated[User, Depends(require("ACTION"))]`` (the session, the CSRF token of a
   POST/PUT/PATCH/DELETE, and the role are checked there, server-side) and returns
   ``render(request, "PAGE.html", **context)``. Run library calls that change something
   inside ``with audit_as(user):`` so their audit lines carry the user.
4. Add the module name to ``routes.ROUTERS``; a nav entry of ``deps.NAV`` turns from grey
   to a link once its path is routed.
5. ``templates/PAGE.html`` starts with ``{% extends "base.html" %}`` and fills
   ``{% block content %}``; fragments htmx swaps in are ``_NAME.html``. Forms carry
   ``<input type="hidden" name="{{ csrf_field }}" value="{{ csrf }}">`` (htmx requests send
   the token as a header from ``<body hx-headers>``). Never mark user text ``|safe``.
   No inline scripts or styles: the CSP allows only ``/static``.
6. Address images and files by opaque ids (dataset, version, item id; a job id), never by
   a path from the client. Test the routes through ``TestClient`` (tests/console/).
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003 - see console.app.create_app
    """See :func:`autovision.console.app.create_app` (imported lazily: FastAPI is heavy)."""
    from autovision.console.app import create_app as _create_app

    return _create_app(*args, **kwargs)
