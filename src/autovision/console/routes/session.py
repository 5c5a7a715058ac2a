"""Logging in and out: the password form, the one-time token link, and ``/``."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from autovision.console.auth import (
    User,
    audit_as,
    authenticate,
    create_session,
    end_session,
    local_user_name,
)
from autovision.console.deps import COOKIE, console_state, current_user, render, require
from autovision.security.audit import acting_as, audit_event

router = APIRouter()
LOGIN_COOKIE = "av_login"  # double-submit token of the login form (no session yet)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this console only (never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/datasets"
    return target


def _set_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=console_state(request).secure,
        path="/",
    )


def _login_page(request: Request, *, next_: str = "", error: str = "", status: int = 200):
    form_token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status_code=status,
        next=safe_next(next_),
        error=error,
        form_token=form_token,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        form_token,
        httponly=True,
        samesite="strict",
        secure=console_state(request).secure,
        path="/login",
    )
    return response


@router.get("/")
def home(request: Request, token: str | None = None) -> Response:
    st = console_state(request)
    if token is not None:
        if not st.login_tokens.consume(token):
            audit_event(st.ws, "console.login", "refused", via="token", reason="invalid token")
            return _login_page(
                request,
                error="This login link was used already or has expired. Log in with a "
                "password, or restart `autovision console` for a new link.",
                status=401,
            )
        name = local_user_name()
        session, user = create_session(st.ws, name, "admin")
        with audit_as(user):
            audit_event(st.ws, "console.login", via="token")
        response = RedirectResponse("/datasets", status_code=303)
        _set_session(request, response, session)
        return response
    target = "/datasets" if current_user(request) is not None else "/login"
    return RedirectResponse(target, status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    return _login_page(request, next_=next)


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1024)],
    form_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    st = console_state(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, form_token):
        return _login_page(
            request, next_=next, error="The login form expired: try again.", status=403
        )
    user = authenticate(st.ws, name, password)
    if user is None:
        with acting_as(user=name, client="console", via="console"):
            audit_event(st.ws, "console.login", "refused", via="password", reason="bad login")
        return _login_page(request, next_=next, error="Wrong user name or password.", status=401)
    token, user = create_session(st.ws, user.name, user.role)
    with audit_as(user):
        audit_event(st.ws, "console.login", via="password")
    response = RedirectResponse(safe_next(next), status_code=303)
    _set_session(request, response, token)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    st = console_state(request)
    end_session(st.ws, request.cookies.get(COOKIE))
    with audit_as(user):
        audit_event(st.ws, "console.logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    if request.headers.get("hx-request") == "true":
        response.headers["HX-Redirect"] = "/login"
    return response
