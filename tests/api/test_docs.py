"""``/docs`` works offline: the Swagger UI page and every asset it loads come from the process."""

from __future__ import annotations

import re

import httpx
import pytest

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("backend", ["sqlite"])  # no database involved
async def test_docs_load_nothing_from_another_host(api: httpx.AsyncClient) -> None:
    page = await api.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "://" not in page.text  # no CDN, no absolute URL of any host
    assert '"validatorUrl": null' in page.text  # Swagger UI would ask validator.swagger.io
    urls = [src or spec for src, spec in ASSET.findall(page.text)]
    assert len(urls) == 4  # stylesheet, icon, script, the OpenAPI document
    kinds = set()
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await api.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        kinds.add(asset.headers["content-type"].split(";")[0].replace("application/", "text/"))
    assert kinds == {"text/css", "image/png", "text/javascript", "text/json"}
    assert (await api.get("/redoc")).status_code == 404  # ReDoc would load from a CDN
