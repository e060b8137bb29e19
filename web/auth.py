"""Bearer tokens: the API's (``HOSTSTREAM_WEB_TOKEN``) and ingest's
(``HOSTSTREAM_INGEST_TOKEN``)."""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as its bearer token.

    Compared in constant time, so the time a refusal takes tells nothing of how much
    of a guess was right.
    """
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # A header that is not UTF-8 reaches us with surrogates in place of its bytes.
    return hmac.compare_digest(given.strip().encode(errors="surrogateescape"), token.encode())
