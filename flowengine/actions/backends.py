"""Which order backend a server talks to, from its settings: the demo orders, the merchant's own
HTTP API, Shopify or WooCommerce (docs/actions.md).

Credentials come from the environment or from files, never from the command line (where `ps`
and shell history would show them) and never from flows. `backend_problem` says what is missing
before the server starts; `open_backend` builds the backend in each worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .demo_backend import DemoBackend
from .orders import OrderBackend

KINDS = ("demo", "http", "shopify", "woocommerce")

SHOPIFY_SHOP = "FLOWENGINE_SHOPIFY_SHOP"
SHOPIFY_TOKEN = "FLOWENGINE_SHOPIFY_TOKEN"
SHOPIFY_CLIENT_ID = "FLOWENGINE_SHOPIFY_CLIENT_ID"
SHOPIFY_CLIENT_SECRET = "FLOWENGINE_SHOPIFY_CLIENT_SECRET"
WOOCOMMERCE_URL = "FLOWENGINE_WOOCOMMERCE_URL"
WOOCOMMERCE_KEY = "FLOWENGINE_WOOCOMMERCE_KEY"
WOOCOMMERCE_SECRET = "FLOWENGINE_WOOCOMMERCE_SECRET"


class BackendSettingsError(ValueError):
    """The chosen backend cannot be built: a setting or a credential is missing or wrong."""


@dataclass(frozen=True)
class BackendSettings:
    """What `serve` was told; the secrets themselves are read when the backend is built."""

    kind: str = "demo"
    orders_api: str | None = None  # kind "http"
    shopify_shop: str | None = None  # else $FLOWENGINE_SHOPIFY_SHOP
    shopify_token_file: str | None = None  # else $FLOWENGINE_SHOPIFY_TOKEN
    shopify_client_secret_file: str | None = None  # else $FLOWENGINE_SHOPIFY_CLIENT_SECRET
    woocommerce_url: str | None = None  # else $FLOWENGINE_WOOCOMMERCE_URL
    woocommerce_secret_file: str | None = None  # else $FLOWENGINE_WOOCOMMERCE_SECRET


def choose_kind(
    orders: str | None,
    orders_api: str | None,
    shopify_options: bool,
    woocommerce_options: bool,
) -> str:
    """The backend a server was told to use: `--orders`, else the one whose options were given
    (`--orders-api`, a Shopify or WooCommerce option), else the demo orders. Options for
    another backend than the one chosen, or for two, are refused rather than ignored."""
    given = [
        kind
        for kind, present in (
            ("http", bool(orders_api)),
            ("shopify", shopify_options),
            ("woocommerce", woocommerce_options),
        )
        if present
    ]
    if orders is None:
        if len(given) > 1:
            raise BackendSettingsError(
                f"options for {' and '.join(given)} given: choose one with --orders"
            )
        return given[0] if given else "demo"
    stray = [kind for kind in given if kind != orders and kind != "http"]
    if stray:
        raise BackendSettingsError(
            f"--orders {orders} was chosen, but {stray[0]} options were given too"
        )
    return orders


def _setting(given: str | None, env: str, what: str, option: str | None = None) -> str:
    value = (given or os.environ.get(env) or "").strip()
    if not value:
        also = f" or give {option}" if option else ""
        raise BackendSettingsError(f"{what}: set {env}{also}")
    return value


def _secret(env: str, file: str | None, what: str, option: str) -> str:
    """A secret from its file (first line), else from the environment."""
    if file:
        try:
            value = Path(file).read_text("utf-8").strip()
        except OSError as exc:
            raise BackendSettingsError(f"{option}: cannot read {file}: {exc.strerror}") from None
        if not value:
            raise BackendSettingsError(f"{option}: {file} is empty")
        return value
    value = os.environ.get(env, "").strip()
    if not value:
        raise BackendSettingsError(f"{what}: set {env}, or name a file with {option}")
    return value


def open_backend(settings: BackendSettings, today: date | None = None) -> OrderBackend:
    """The backend the settings name; `BackendSettingsError` says what is missing."""
    kind = settings.kind
    if kind == "demo":
        return DemoBackend(today or date.today())
    if kind == "http":
        from .http_backend import HttpBackend

        if not settings.orders_api:
            raise BackendSettingsError("--orders http needs --orders-api URL")
        return HttpBackend(settings.orders_api)
    if kind == "shopify":
        from .shopify import ShopifyBackend

        shop = _setting(
            settings.shopify_shop, SHOPIFY_SHOP, "the Shopify shop domain", "--shopify-shop"
        )
        try:
            token, client_id, client_secret = _shopify_credentials(settings)
            return ShopifyBackend(shop, token, client_id=client_id, client_secret=client_secret)
        except ValueError as exc:
            raise BackendSettingsError(str(exc)) from None
    if kind == "woocommerce":
        from .woocommerce import WooCommerceBackend

        url = _setting(
            settings.woocommerce_url,
            WOOCOMMERCE_URL,
            "the WooCommerce store URL",
            "--woocommerce-url",
        )
        key = _setting(None, WOOCOMMERCE_KEY, "the WooCommerce REST API consumer key")
        secret = _secret(
            WOOCOMMERCE_SECRET,
            settings.woocommerce_secret_file,
            "the WooCommerce REST API consumer secret",
            "--woocommerce-secret-file",
        )
        try:
            return WooCommerceBackend(url, key, secret)
        except ValueError as exc:
            raise BackendSettingsError(str(exc)) from None
    raise BackendSettingsError(f"--orders: no backend '{kind}' (one of {', '.join(KINDS)})")


def _shopify_credentials(settings: BackendSettings) -> tuple[str | None, str | None, str | None]:
    """(token, client id, client secret): a Dev Dashboard app's client id and secret (the
    backend fetches and renews its own 24-hour tokens), or an older admin app's static token;
    one of the two, never both."""
    client = bool(
        os.environ.get(SHOPIFY_CLIENT_ID)
        or os.environ.get(SHOPIFY_CLIENT_SECRET)
        or settings.shopify_client_secret_file
    )
    static = bool(os.environ.get(SHOPIFY_TOKEN) or settings.shopify_token_file)
    if client and static:
        raise BackendSettingsError(
            "Shopify: give either a client id and secret or an access token, not both"
        )
    if client:
        client_id = _setting(None, SHOPIFY_CLIENT_ID, "the Shopify app's client id")
        secret = _secret(
            SHOPIFY_CLIENT_SECRET,
            settings.shopify_client_secret_file,
            "the Shopify app's client secret",
            "--shopify-client-secret-file",
        )
        return None, client_id, secret
    token = _secret(
        SHOPIFY_TOKEN,
        settings.shopify_token_file,
        "the Shopify credentials (a client id and secret, or an Admin API access token)",
        "--shopify-token-file",
    )
    return token, None, None


async def close_backend(backend: OrderBackend) -> None:
    """Close what the backend holds open (an HTTP client), if anything."""
    aclose = getattr(backend, "aclose", None)
    if aclose is not None:
        await aclose()
