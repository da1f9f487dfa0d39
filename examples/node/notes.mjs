// Calling data-service from Node.js (>= 18) with nothing but its own fetch:
// create, read, conditional update, the 412 a stale update gets, the retry loop a
// caller should write around it, and a query. One JSON line per step on stdout.
//
//   node examples/node/notes.mjs [URL] [--token=TOKEN | --token-file=FILE]
//
// URL defaults to $DATA_SERVICE_URL, else http://127.0.0.1:8080. A sidecar with
// --api-token-file wants `Authorization: Bearer <token>`: the token is --token, else the
// first token in --token-file (the sidecar's own format: one per line, # comments), else
// $DATA_SERVICE_TOKEN, else the first in $DATA_SERVICE_TOKEN_FILE (docker/compose.yaml
// sets it to the mounted secret). Without one, no Authorization header is sent.
//
// tests/server/test_clients.py runs it against a live sidecar with a token file on every CI run.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: flags, positionals } = parseArgs({
  options: { token: { type: "string" }, "token-file": { type: "string" } },
  allowPositionals: true,
});
const base = positionals[0] ?? process.env.DATA_SERVICE_URL ?? "http://127.0.0.1:8080";

function firstToken(file) {
  const token = readFileSync(file, "utf8")
    .split("\n")
    .map((line) => line.trim())
    .find((line) => line && !line.startsWith("#"));
  if (!token) throw new Error(`${file}: no token in it`);
  return token;
}

function chosenToken() {
  if (flags.token) return flags.token; // shows in the process list: prefer a file
  if (flags["token-file"]) return firstToken(flags["token-file"]);
  if (process.env.DATA_SERVICE_TOKEN) return process.env.DATA_SERVICE_TOKEN;
  if (process.env.DATA_SERVICE_TOKEN_FILE) return firstToken(process.env.DATA_SERVICE_TOKEN_FILE);
  return undefined;
}

const token = chosenToken();
const authorization = token ? { Authorization: `Bearer ${token}` } : {};

async function call(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...authorization, ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] ??= "application/json";
  }
  const response = await fetch(base + path, init);
  const text = await response.text();
  return { status: response.status, etag: response.headers.get("ETag"), json: text ? JSON.parse(text) : null, response };
}

function expect(reply, status, step) {
  if (reply.status !== status) {
    throw new Error(`${step}: expected ${status}, got ${reply.status} ${JSON.stringify(reply.json)}`);
  }
  return reply;
}

const print = (line) => console.log(JSON.stringify(line));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The conditional-update loop: apply `change` to the representation you hold and PUT
// it with If-Match. A 412 carries the current representation and its ETag: re-apply
// the change to it and try again. A 503 says when to come back (Retry-After).
// Anything else is final. Never retry a 4xx other than 412: it will fail again.
async function updateWithRetry(path, held, etag, change, maxAttempts = 5) {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const { id, meta, ...fields } = held;
    const reply = await call("PUT", path, { body: change(fields), headers: { "If-Match": etag } });
    if (reply.status === 200) return { reply, attempts: attempt };
    if (reply.status === 412) {
      held = reply.json.current;
      etag = reply.etag;
    } else if (reply.status === 503) {
      await sleep(1000 * Number(reply.response.headers.get("Retry-After") ?? 1));
    } else {
      throw new Error(`update: ${reply.status} ${reply.json?.code}: ${reply.json?.detail ?? reply.json?.title}`);
    }
  }
  throw new Error(`update: still conflicting after ${maxAttempts} attempts`);
}

const created = expect(await call("POST", "/v1/note", { body: { title: "first" } }), 201, "create");
const path = `/v1/note/${created.json.id}`;
print({ step: "create", status: created.status, id: created.json.id, etag: created.etag });

const read = expect(await call("GET", path), 200, "get");
print({ step: "get", status: read.status, title: read.json.title, etag: read.etag });

const updated = expect(
  await call("PUT", path, { body: { title: "second" }, headers: { "If-Match": read.etag } }),
  200,
  "update",
);
print({ step: "update", status: updated.status, title: updated.json.title, etag: updated.etag });

// The ETag we read first is stale now: this is what a lost update looks like.
const stale = expect(
  await call("PUT", path, { body: { title: "lost update" }, headers: { "If-Match": read.etag } }),
  412,
  "stale",
);
print({ step: "stale", status: stale.status, code: stale.json.code, retryable: stale.json.retryable });

// The loop starts from the stale copy too: one 412, then the change lands on `current`.
const { reply: retried, attempts } = await updateWithRetry(path, read.json, read.etag, (fields) => ({
  ...fields,
  body: "appended by the retry loop",
}));
print({ step: "retried", status: retried.status, attempts, title: retried.json.title, body: retried.json.body });

const page = expect(await call("GET", "/v1/note?limit=10"), 200, "query");
print({ step: "query", status: page.status, ids: page.json.items.map((item) => item.id), next: page.json.next });
