"""Bearer tokens with three roles. viewer reads, operator reads and acts, gateway
ingests, follows its event stream and fetches blobs. 401: no or unknown token;
403: a known token whose role may not do this."""
from __future__ import annotations

import hmac

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

READ = ("viewer", "operator")
ACT = ("operator",)
GATEWAY = ("gateway",)
BLOBS = ("gateway", "operator", "viewer")

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")


def _role_of(request: Request, token: str | None) -> str:
    if not token:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    tokens: dict = request.app.state.settings.tokens
    for known, role in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return role
    raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})


def require(*roles: str):
    """Dependency: the caller's role, or 401/403."""

    def check(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        role = _role_of(request, cred.credentials if cred else None)
        if role not in roles:
            raise HTTPException(403, f"role {role!r} may not do this (needs {' or '.join(roles)})")
        return role

    return check


def require_query_ok(*roles: str):
    """Like require(), but also accepts ?token= (EventSource cannot set headers)."""

    def check(request: Request, token: str | None = None,
              cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        role = _role_of(request, cred.credentials if cred else token)
        if role not in roles:
            raise HTTPException(403, f"role {role!r} may not do this (needs {' or '.join(roles)})")
        return role

    return check
