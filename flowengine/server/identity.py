"""Identity verification: a shop proves a logged-in shopper's email with an HMAC.

The shop's backend computes `hex(HMAC-SHA256(secret, email))` with the secret it shares with
flowengine (`FLOWENGINE_IDENTITY_SECRET`) and gives it to the widget as `user_hash`. A hello whose
hash matches marks the shopper `verified`, which flows use to skip asking for the email. Without
the secret, or with a wrong hash, nobody is verified: a claim alone proves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any


def user_hash(secret: str, email: str) -> str:
    return hmac.new(secret.encode(), email.strip().lower().encode(), hashlib.sha256).hexdigest()


def verify_shopper(shopper: dict[str, Any], given_hash: Any, secret: str | None) -> dict[str, Any]:
    """The shopper context with `verified` set by the server, and no hash in it."""
    out = {k: v for k, v in shopper.items() if k not in ("verified", "user_hash")}
    if not out:
        return {}  # nobody said who this is: a resuming hello keeps what the session knows
    email = out.get("email")
    out["verified"] = bool(
        secret
        and isinstance(email, str)
        and isinstance(given_hash, str)
        and hmac.compare_digest(user_hash(secret, email), given_hash.strip().lower())
    )
    return out
