"""The API docs at /docs work offline: Swagger UI comes from files vendored into the package,
the page names no other site (its Content-Security-Policy allows none), the OpenAPI document
is still served, and FastAPI's CDN-backed pages (ReDoc, the OAuth2 redirect) are gone.
On SQLite and PostgreSQL (the app's fixtures), though no page here reads the database.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from refill.apidocs import STATIC

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PACKAGE = STATIC.parents[1]  # src/refill: package-data globs are relative to it


class Assets(HTMLParser):
    """What a page makes the browser load: each script's src, each <link>'s href by rel,
    and the text of each inline script."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.loaded: list[tuple[str, str]] = []  # (kind, address)
        self.inline_scripts: list[str] = []
        self._in_inline_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" in found:
            self.loaded.append(("script", found["src"]))
        elif tag == "script":
            self._in_inline_script = True
            self.inline_scripts.append("")
        elif tag == "link" and "href" in found:
            rel = found.get("rel", "")
            self.loaded.append(("icon" if "icon" in rel else rel, found["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def docs_assets(client: TestClient) -> Assets:
    response = client.get("/docs")
    assert response.status_code == 200
    return Assets(response.text)


def test_docs_page_is_swagger_ui_that_names_no_other_site(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle(" in response.text
    assert "cdn" not in response.text.lower()
    addresses = [address for _, address in Assets(response.text).loaded]
    assert addresses, "the page loads Swagger UI's script and stylesheet"
    for address in addresses:
        assert "http://" not in address
        assert "https://" not in address
        assert address.startswith("/docs/static/"), address  # never "//host/..."


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        # RFC 9239 names text/javascript; older MIME tables still say application/.
        pytest.param("script", r"(text|application)/javascript\b", id="script"),
        pytest.param("stylesheet", r"text/css\b", id="stylesheet"),
        pytest.param("icon", r"image/png\b", id="favicon"),
    ],
)
def test_every_asset_the_docs_page_loads_is_the_vendored_file_served_here(
    client: TestClient, kind: str, content_type: str
) -> None:
    addresses = [address for found, address in docs_assets(client).loaded if found == kind]
    assert addresses, f"the page loads a {kind}"
    for address in addresses:
        response = client.get(address)
        assert response.status_code == 200, address
        assert re.match(content_type, response.headers["content-type"]), address
        assert response.content == (STATIC / address.rsplit("/", 1)[1]).read_bytes()


def test_docs_page_policy_allows_its_start_up_script_and_nothing_remote(
    client: TestClient,
) -> None:
    response = client.get("/docs")
    policy = response.headers["content-security-policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
    )
    assert directives["default-src"] == ["'none'"]
    assert not re.search(r"https?:|\*|'unsafe-inline'|'unsafe-eval'", policy), policy
    inline = Assets(response.text).inline_scripts
    assert len(inline) == 1, "Swagger UI's start-up script, written by FastAPI"
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert directives["script-src"] == ["'self'", f"'sha256-{digest}'"]
    assert directives["connect-src"] == ["'self'"]  # the document, and "Try it out"


def test_swagger_ui_is_told_not_to_ask_the_online_validator(client: TestClient) -> None:
    page = client.get("/docs").text
    assert re.search(r'"validatorUrl":\s*null', page), "its default is validator.swagger.io"


def test_openapi_document_is_still_served_without_the_docs_page(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/v1/wallet" in document["paths"]
    assert not any(path.startswith("/docs") for path in document["paths"])
    assert re.search(r"url:\s*'/openapi\.json'", client.get("/docs").text)


def test_every_schema_has_its_own_name_so_generated_clients_keep_it(client: TestClient) -> None:
    # Two models of one name in different modules become "refill__api__x__Name", which
    # client generators cannot follow (they then drop every schema that refers to it).
    names = client.get("/openapi.json").json()["components"]["schemas"]
    assert [name for name in names if "__" in name] == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/redoc", id="redoc"),
        pytest.param("/docs/oauth2-redirect", id="oauth2-redirect"),
        pytest.param("/docs/static/swagger-ui-bundle.js.map", id="file-not-vendored"),
    ],
)
def test_pages_and_files_not_offered_answer_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_every_vendored_file_is_package_data() -> None:
    """A file the globs miss would be in the checkout but not in the installed package."""
    globs: list[str] = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"][
        "refill"
    ]
    vendored = sorted(path for path in STATIC.iterdir() if path.is_file())
    assert {path.name for path in vendored} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for path in vendored:
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), relative
