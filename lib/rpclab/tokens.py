"""Bearer tokens for a class: the token file a teacher writes, and the check an HTTP server makes.

A token file has one learner a line, ``NAME TOKEN`` (blank lines and lines starting with
``#`` are skipped)::

    ada   8qJ3vVmuXnF0yq1bZ2JgFQ
    grace Yx7Z0a5pWbqk3N4c9HfR2w

``rpclab serve ... --token-file F`` reads it with :func:`read_token_file`: every call must
then carry ``authorization: Bearer TOKEN`` (gRPC metadata, or an HTTP header), and NAME is
who the server says called, in its log and in its per-learner limits. :func:`make_token`
makes a token no one will guess; ``python -m rpclab.tokens ada grace alan > tokens.txt``
writes a token file for a class.

gRPC servers check tokens with rpclab.grpcstack.interceptors.TokenAuth; the XML-RPC and
REST servers (rpclab.adapters) with :class:`BearerTokens`. Used by ``rpclab serve``,
TEACHING.md's lab section and notebook 10 (a class server's token file).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "TokenFileError",
    "BearerTokens",
    "read_token_file",
    "make_token",
    "MAX_TOKEN_LENGTH",
    "MIN_TOKEN_LENGTH",
]

MAX_TOKEN_LENGTH = 4096  # longer authorization values are refused without comparing them
MIN_TOKEN_LENGTH = 12  # a shorter token in a token file is refused: too easy to guess
MAX_FILE_SIZE = 1024 * 1024  # a token file is a class list, not a database
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what an HTTP header value carries as is


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file, the line and the reason."""


def read_token_file(path: str | Path) -> dict[str, str]:
    """The tokens of a token file: token -> learner's name. Raises TokenFileError saying what is
    wrong (a line that is not ``NAME TOKEN``, a name or token used twice, a short token)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_SIZE:
            raise TokenFileError(f"{path}: {size} bytes; a token file is at most {MAX_FILE_SIZE}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc}") from None
    holders: dict[str, str] = {}
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {number}"
        fields = line.split()
        if len(fields) != 2:
            raise TokenFileError(f"{where}: expected 'NAME TOKEN', found {len(fields)} fields")
        name, token = fields
        if not _NAME.fullmatch(name):
            raise TokenFileError(
                f"{where}: a name is 1 to 64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        if not _TOKEN.fullmatch(token) or not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
            raise TokenFileError(
                f"{where}: {name}'s token must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} "
                "visible ASCII characters (rpclab.tokens.make_token() makes one)"
            )
        if name in names:
            raise TokenFileError(f"{where}: {name} has a token already")
        if token in holders:
            raise TokenFileError(f"{where}: {name}'s token is also {holders[token]}'s")
        names.add(name)
        holders[token] = name
    if not holders:
        raise TokenFileError(f"{path} holds no 'NAME TOKEN' line")
    return holders


def make_token() -> str:
    """A new random token: 22 URL-safe characters (128 bits from the secrets module)."""
    return secrets.token_urlsafe(16)


class BearerTokens:
    """Who holds the token of an HTTP ``Authorization: Bearer <token>`` header.

    ``holders`` maps each valid token to its holder's name. Each check compares the given
    token with every known one in constant time (hmac.compare_digest), so how long a
    refusal takes says nothing about how close a guess was.
    """

    def __init__(self, holders: Mapping[str, str]) -> None:
        if not holders:
            raise ValueError("BearerTokens needs at least one token")
        self._holders = [(token.encode(), name) for token, name in holders.items()]

    def check(self, authorization: str | None) -> str:
        """The holder of the header's token; PermissionError saying why if there is none."""
        if authorization is None:
            raise PermissionError(
                "no 'Authorization: Bearer <token>' header: this server needs a token"
            )
        if len(authorization) > MAX_TOKEN_LENGTH + 7:
            raise PermissionError("the Authorization header is too long")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PermissionError("the Authorization header must read 'Bearer <token>'")
        given = token.strip().encode("latin-1", "replace")
        holder = None
        for known, name in self._holders:
            if hmac.compare_digest(given, known):
                holder = name
        if holder is None:
            raise PermissionError("the bearer token is not valid")
        return holder


def main(argv: list[str] | None = None) -> int:
    """``python -m rpclab.tokens NAME...``: a token file for these learners, on stdout."""
    import sys

    names = sys.argv[1:] if argv is None else argv
    if not names or any(not _NAME.fullmatch(name) for name in names):
        print(
            "usage: python -m rpclab.tokens NAME [NAME...] > tokens.txt  (names: letters, "
            "digits, '.', '_', '@', '-')",
            file=sys.stderr,
        )
        return 2
    if len(set(names)) != len(names):
        print("each name once, please", file=sys.stderr)
        return 2
    for name in names:
        print(name, make_token())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
