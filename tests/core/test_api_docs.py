"""The API docs page loads Swagger UI from Lamplighter itself: it works offline."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_api_docs_use_only_same_origin_assets(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, "the page loads Swagger UI's script and style"
    assert all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert "/api/v1/openapi.json" in page.text
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
    script = next(a for a in assets if a.endswith(".js") or ".js?" in a)
    assert "SwaggerUIBundle" in client.get(script).text


def test_the_default_cdn_docs_are_gone(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert "/api/docs" not in client.get("/api/v1/openapi.json").json()["paths"]
