"""URL settings: what an API URL must look like, and how credentials inside one are kept out of logs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

#: What replaces the user and password of a URL, and a secret, in anything logged or saved.
MASK = "**********"


def http_url_problem(key: str, url: str, *, credentials_allowed: bool = False) -> str | None:
    """Why ``url`` (the value of the dotted ``key``) is not an http(s) URL with a host; None when it is.

    Credentials in the URL are refused unless ``credentials_allowed``: each group that talks to an
    API has its own ``auth`` secret, and a password in a URL would otherwise travel wherever the URL
    is shown. The message never repeats the password.
    """
    try:
        split = urlsplit(url)
        hostname = split.hostname
    except ValueError:
        return f"{key}={mask_credentials(url)!r}: not a URL (give http:// or https:// and a host)"
    if not credentials_allowed and (split.username is not None or split.password is not None):
        return f"{key}: no user or password in the URL (they would be logged)"
    if split.scheme not in ("http", "https") or not hostname:
        return f"{key}={mask_credentials(url)!r}: give an http:// or https:// URL with a host"
    return None


def mask_credentials(text: str) -> str:
    """``text`` with the user and password of a URL replaced by :data:`MASK`; other text unchanged."""
    if "@" not in text or "://" not in text:
        return text
    try:
        split = urlsplit(text)
    except ValueError:
        return text
    if split.username is None and split.password is None:
        return text
    host = split.netloc.rpartition("@")[2]
    return split._replace(netloc=f"{MASK}@{host}").geturl()


def mask_credentials_in(data: Any) -> Any:
    """``data`` (JSON-like: mappings, lists, strings) with every URL's credentials masked."""
    if isinstance(data, str):
        return mask_credentials(data)
    if isinstance(data, dict):
        return {key: mask_credentials_in(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_credentials_in(value) for value in data]
    return data


__all__ = ["MASK", "http_url_problem", "mask_credentials", "mask_credentials_in"]
