"""/_docs in a real browser: headless Chromium (Debian's package, driven by playwright-core
from npm) loads the explorer from a sidecar that wants a token, renders the declared
types' operations and schemas, and a "Try it out" GET returns the document. Nothing is
fetched from anywhere but the sidecar. Marker ``browser``: needs $CHROMIUM (the browser's
path; `make test-browser` installs Debian's chromium and sets it)."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from support import ROOT, install_design_docs, run, running_app

pytestmark = pytest.mark.browser
TOKEN = "browser-token-0123456789abcdef"


async def test_the_explorer_renders_the_operations_and_tries_a_get(config, db, http, tmp_path):
    await install_design_docs(db)
    tokens = tmp_path / "api_tokens"
    tokens.write_text(TOKEN + "\n")
    tokens.chmod(0o600)  # a secret file: owner only
    async with running_app(replace(config, api_token_file=str(tokens))) as (base, _):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(f"{base}/v1/note", json={"title": "seen in a browser"}, headers=headers) as resp:
            assert resp.status == 201
            docid = (await resp.json())["id"]
        screenshot = tmp_path / "explorer.png"
        status, output = await run(
            "node",
            str(ROOT / "tests" / "explorer_browser.mjs"),
            base,
            TOKEN,
            docid,
            os.environ["CHROMIUM"],
            str(screenshot),
            cwd=ROOT,
        )
    assert status == 0, output
    seen = json.loads(output.splitlines()[-1])
    assert seen["pageStatus"] == 200 and seen["title"].startswith("data-service")
    assert seen["elsewhere"] == [] and seen["consoleErrors"] == [], seen  # no CDN, no CSP violation
    operations = {f"operations-note-{op}_note" for op in ("createDocument", "getDocument", "headDocument")}
    assert operations <= set(seen["noteOperations"]) and seen["operations"] > 20
    shown = {name.lower() for name in seen["schemas"]}  # Swagger UI upper-cases the first letter
    assert {"note", "note_input", "note_patch", "note_stale_revision", "user_verify"} <= shown
    assert seen["tryItStatus"] == "200"
    assert json.loads(seen["tryItBody"])["title"] == "seen in a browser"
    assert screenshot.stat().st_size > 10_000
