"""Choosing the order backend: `serve --orders ...` with credentials from the environment or
files; what is missing stops the server before it opens a port, saying what; and a real server
on WooCommerce answers a shopper from the shop's data."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from flowengine.actions import backends
from flowengine.actions.backends import BackendSettings, BackendSettingsError, open_backend
from flowengine.actions.demo_backend import DemoBackend
from flowengine.actions.http_backend import HttpBackend
from flowengine.actions.shopify import ShopifyBackend
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.platforms import woocommerce
from tests.platforms.woocommerce import LocalWooCommerce
from tests.server_process import ROOT, Client

SERVE = [sys.executable, "-m", "flowengine", "serve", "--memory", "--port", "9"]
ENV_NAMES = [
    backends.SHOPIFY_SHOP,
    backends.SHOPIFY_TOKEN,
    backends.SHOPIFY_CLIENT_ID,
    backends.SHOPIFY_CLIENT_SECRET,
    backends.WOOCOMMERCE_URL,
    backends.WOOCOMMERCE_KEY,
    backends.WOOCOMMERCE_SECRET,
    "FLOWENGINE_ORDERS",
    "FLOWENGINE_ORDERS_API",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_is_the_demo_and_an_api_url_alone_means_http() -> None:
    assert isinstance(open_backend(ServerConfig().backend_settings()), DemoBackend)
    api = ServerConfig(orders_api="https://shop.example/api").backend_settings()
    assert api.kind == "http" and isinstance(open_backend(api), HttpBackend)


def test_shopify_from_a_token_file_or_client_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("shpat_from_a_file\n")
    monkeypatch.setenv(backends.SHOPIFY_SHOP, "my-shop.myshopify.com")
    made = open_backend(BackendSettings(kind="shopify", shopify_token_file=str(token_file)))
    assert isinstance(made, ShopifyBackend)

    monkeypatch.setenv(backends.SHOPIFY_CLIENT_ID, "client-id")
    monkeypatch.setenv(backends.SHOPIFY_CLIENT_SECRET, "client-secret")
    with pytest.raises(BackendSettingsError, match="not both"):
        open_backend(BackendSettings(kind="shopify", shopify_token_file=str(token_file)))
    assert isinstance(open_backend(BackendSettings(kind="shopify")), ShopifyBackend)


@pytest.mark.parametrize(
    ("settings", "env", "said"),
    [
        (BackendSettings(kind="http"), {}, "--orders-api"),
        (BackendSettings(kind="shopify"), {}, "FLOWENGINE_SHOPIFY_SHOP"),
        (
            BackendSettings(kind="shopify"),
            {backends.SHOPIFY_SHOP: "my-shop.myshopify.com"},
            "FLOWENGINE_SHOPIFY_TOKEN",
        ),
        (
            BackendSettings(kind="shopify", shopify_token_file="/nonexistent/token"),
            {backends.SHOPIFY_SHOP: "my-shop.myshopify.com"},
            "cannot read /nonexistent/token",
        ),
        (
            BackendSettings(kind="shopify"),
            {backends.SHOPIFY_SHOP: "https://my-shop.com/admin", backends.SHOPIFY_TOKEN: "t"},
            "myshopify.com",
        ),
        (BackendSettings(kind="woocommerce"), {}, "FLOWENGINE_WOOCOMMERCE_URL"),
        (
            BackendSettings(kind="woocommerce", woocommerce_url="https://shop.example"),
            {backends.WOOCOMMERCE_KEY: "ck_x"},
            "FLOWENGINE_WOOCOMMERCE_SECRET",
        ),
        (
            BackendSettings(kind="woocommerce", woocommerce_url="http://shop.example"),
            {backends.WOOCOMMERCE_KEY: "ck_x", backends.WOOCOMMERCE_SECRET: "cs_y"},
            "https",
        ),
        (BackendSettings(kind="magento"), {}, "no backend 'magento'"),
    ],
)
def test_what_is_missing_is_named(
    settings: BackendSettings, env: dict[str, str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(BackendSettingsError) as refused:
        open_backend(settings)
    assert said in str(refused.value)
    for secret in ("ck_x", "cs_y"):
        assert secret not in str(refused.value)


def test_serve_stops_before_opening_a_port_when_a_credential_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env[backends.SHOPIFY_SHOP] = "my-shop.myshopify.com"
    done = subprocess.run(
        [sys.executable, "-m", "flowengine", "serve", "--orders", "shopify", "--port", "9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "the order backend cannot be used" in done.stderr
    assert "FLOWENGINE_SHOPIFY_TOKEN" in done.stderr and "Traceback" not in done.stderr


async def test_a_shopper_tracks_an_order_kept_in_woocommerce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "wc-secret"
    secret_file.write_text(woocommerce.SECRET)
    monkeypatch.setenv(backends.WOOCOMMERCE_KEY, woocommerce.KEY)
    async with LocalWooCommerce(date.today()) as shop:
        config = ServerConfig(
            orders="woocommerce",
            woocommerce_url=shop.url,
            woocommerce_secret_file=str(secret_file),
            handoff_config=None,
        )
        async with AppServer(config) as server:
            c = await Client.connect(server.ws_url)
            await c.until(lambda f: any(o["id"] == "track" for o in f.get("options", [])))
            await c.act({"type": "choose", "option": "track"})
            await c.act({"type": "text", "text": "1003"})
            await c.act({"type": "text", "text": "chloe.pop@example.com"})
            await c.until(lambda f: "on its way with DHL" in str(f.get("text")))
            await c.close()
        assert any("/orders/1003" in str(r) for r in shop.requests)


def test_a_platforms_options_choose_it_and_are_never_ignored() -> None:
    """Found by a merchant: `--shopify-token-file /missing` without `--orders shopify` served
    the demo orders, saying nothing."""
    from flowengine.actions.backends import choose_kind

    assert choose_kind(None, None, True, False) == "shopify"
    assert choose_kind(None, None, False, True) == "woocommerce"
    assert choose_kind(None, "https://shop.example/api", False, False) == "http"
    assert choose_kind(None, None, False, False) == "demo"
    with pytest.raises(BackendSettingsError, match="shopify and woocommerce"):
        choose_kind(None, None, True, True)
    with pytest.raises(BackendSettingsError, match="--orders demo was chosen, but shopify"):
        choose_kind("demo", None, True, False)


def test_serve_with_a_missing_token_file_and_no_orders_option_stops(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env[backends.SHOPIFY_SHOP] = "my-shop.myshopify.com"
    done = subprocess.run(
        [*SERVE, "--shopify-token-file", str(tmp_path / "missing")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot read" in done.stderr and "missing" in done.stderr
