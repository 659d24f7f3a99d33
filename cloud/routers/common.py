"""Small helpers every router uses."""
from __future__ import annotations

from fastapi import Request

from cloud.db import Database

MAX_I31 = 2**31 - 1
MAX_TS = 253402300799999


def db(request: Request) -> Database:
    return request.app.state.db


def settings(request: Request):
    return request.app.state.settings
