// Drives /_docs in headless Chromium (Debian's, through playwright-core) for
// tests/server/test_explorer_browser.py: the page renders the declared types' operations and
// schemas, and "Try it out" on GET /v1/note/{id} gets the document. Prints one JSON
// object: what it saw, every request that left the sidecar's origin, console errors.
//
//   node tests/explorer_browser.mjs BASE TOKEN DOCUMENT_ID CHROMIUM SCREENSHOT

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, token, docid, executablePath, screenshot] = process.argv.slice(2);
// a new empty profile; playwright-core adds --headless and takes the profile as an argument
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "explorer-")), {
  executablePath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  extraHTTPHeaders: { Authorization: `Bearer ${token}` }, // what a caller's proxy or extension adds
});
const seen = { elsewhere: [], consoleErrors: [] };
try {
  const page = await context.newPage();
  page.on("request", (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith("data:")) seen.elsewhere.push(request.url());
  });
  page.on("console", (message) => {
    if (message.type() === "error") seen.consoleErrors.push(message.text());
  });
  const answer = await page.goto(`${base}/_docs`);
  seen.pageStatus = answer.status();
  const operation = page.locator("#operations-note-getDocument_note");
  await operation.waitFor({ timeout: 30000 });
  seen.title = await page.locator(".info .title").first().innerText();
  seen.operations = await page.locator(".opblock").count();
  seen.noteOperations = await page.locator("[id^='operations-note-']").evaluateAll((all) => all.map((e) => e.id));
  seen.schemas = await page.locator(".models article[data-json-schema-level='0'] .json-schema-2020-12__title").allTextContents();

  await operation.locator(".opblock-summary").first().click();
  await operation.locator(".try-out__btn").click();
  await operation.locator("tr[data-param-name='id'] input").fill(docid);
  await operation.locator(".execute").click();
  const status = operation.locator(".live-responses-table tr.response .response-col_status").first();
  await status.waitFor({ timeout: 30000 });
  seen.tryItStatus = (await status.innerText()).trim();
  seen.tryItBody = await operation.locator(".live-responses-table tr.response .response-col_description pre").first().innerText();
  await page.screenshot({ path: screenshot, fullPage: false });
} finally {
  await context.close();
}
console.log(JSON.stringify(seen));
