"""``/_docs``: an API explorer (Swagger UI) over the spec this sidecar serves, with every
declared type's schemas and operations. Swagger UI's own files come from the
``swagger-ui-bundle-v2`` package and are served from here: the page loads nothing from
elsewhere (its Content-Security-Policy says so). Behind the same door as the API."""

from __future__ import annotations

import functools

from swagger_ui_bundle import swagger_ui_path

from .base import BaseHandler

HTML = "text/html; charset=utf-8"
# what the page may load: this origin only (Swagger UI styles elements inline and
# draws icons from data: URLs)
POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>data-service API</title>
  <link rel="stylesheet" href="/_docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/_docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/_docs/swagger-ui-bundle.js"></script>
  <script src="/_docs/explorer.js"></script>
</body>
</html>
"""
# The explorer reads the spec from this sidecar; "Try it out" calls it (Authorize takes a token).
EXPLORER = b"""window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  defaultModelsExpandDepth: 1,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""
# the files the page uses, from the package (served as they are), and their media types
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
ASSET_ROUTE = r"/_docs/(swagger-ui\.css|swagger-ui-bundle\.js|favicon-32x32\.png|explorer\.js)"


@functools.cache
def _asset(name: str) -> bytes:
    return (swagger_ui_path / name).read_bytes()


class _Page(BaseHandler):
    def send(self, body: bytes, content_type: str) -> None:
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Security-Policy", POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")  # the files change with the package
        self.finish(body)


class DocsHandler(_Page):
    produces = ("text/html",)

    def get(self) -> None:
        self.send(PAGE, HTML)


class DocsAssetHandler(_Page):
    produces = ("text/css", "text/javascript", "image/png")

    def get(self, name: str) -> None:
        if name == "explorer.js":
            self.send(EXPLORER, ASSETS["swagger-ui-bundle.js"])
        else:
            self.send(_asset(name), ASSETS[name])
