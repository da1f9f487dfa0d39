// Calling data-service from TypeScript with a client generated from the spec it serves:
// types from openapi-typescript, requests through openapi-fetch. Create, read, update,
// the 412 a stale update gets (its `current` is typed as a note), the retry loop around
// it, and a query. One JSON line per step on stdout.
//
//   curl -s -H "Authorization: Bearer $TOKEN" localhost:8080/openapi.json > openapi.json
//   npx openapi-typescript openapi.json -o schema.d.ts   # or: data-service openapi --models=FILE
//   npx tsc -p examples/typescript && node examples/typescript/out/notes.mjs http://127.0.0.1:8080
//
// The token comes from $DATA_SERVICE_TOKEN or the first line of $DATA_SERVICE_TOKEN_FILE
// (none: no Authorization header). tests/server/test_clients.py generates schema.d.ts from a
// live sidecar, type-checks this file with `tsc --strict` and runs it, on every CI run.

import { readFileSync } from "node:fs";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Note = components["schemas"]["note"];
type NoteInput = components["schemas"]["note_input"];

function token(): string | undefined {
  const file = process.env.DATA_SERVICE_TOKEN_FILE;
  const fromFile = file
    ? readFileSync(file, "utf8")
        .split("\n")
        .map((line) => line.trim())
        .find((line) => line && !line.startsWith("#"))
    : undefined;
  return process.env.DATA_SERVICE_TOKEN ?? fromFile;
}

const bearer = token();
const client = createClient<paths>({
  baseUrl: process.argv[2] ?? process.env.DATA_SERVICE_URL ?? "http://127.0.0.1:8080",
  headers: bearer ? { Authorization: `Bearer ${bearer}` } : {},
});
const print = (line: object) => console.log(JSON.stringify(line));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function fields({ id, meta, ...rest }: Note): NoteInput {
  return rest;
}

// The conditional-update loop: apply `change` to the note you hold and PUT it with
// If-Match. A 412 carries the current note and its ETag: re-apply the change to it and
// try again. A 503 says when to come back (Retry-After). Anything else is final.
async function updateWithRetry(held: Note, etag: string, change: (note: NoteInput) => NoteInput, maxAttempts = 5) {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const { data, error, response } = await client.PUT("/v1/note/{id}", {
      params: { path: { id: held.id }, header: { "If-Match": etag } },
      body: change(fields(held)),
    });
    if (data) return { note: data, attempts: attempt };
    if (error.code === "stale_revision") {
      held = error.current; // typed: a note, not a generic document
      etag = response.headers.get("ETag") ?? etag;
    } else if (response.status === 503) {
      await sleep(1000 * Number(response.headers.get("Retry-After") ?? 1));
    } else {
      throw new Error(`update: ${response.status} ${error.code}: ${error.detail ?? error.title}`);
    }
  }
  throw new Error(`update: still conflicting after ${maxAttempts} attempts`);
}

const created = await client.POST("/v1/note", { body: { title: "first" } });
if (!created.data) throw new Error(`create: ${created.response.status} ${created.error.code}`);
const id = created.data.id;
const firstEtag = created.response.headers.get("ETag") ?? "";
print({ step: "create", status: created.response.status, id, etag: firstEtag });

const read = await client.GET("/v1/note/{id}", { params: { path: { id } } });
if (!read.data) throw new Error(`get: ${read.response.status} ${read.error.code}`);
print({ step: "get", status: read.response.status, title: read.data.title });

const updated = await client.PUT("/v1/note/{id}", {
  params: { path: { id }, header: { "If-Match": firstEtag } },
  body: { title: "second" },
});
if (!updated.data) throw new Error(`update: ${updated.response.status} ${updated.error.code}`);
print({ step: "update", status: updated.response.status, title: updated.data.title });

// The first ETag is stale now: this is what a lost update looks like.
const stale = await client.PUT("/v1/note/{id}", {
  params: { path: { id }, header: { "If-Match": firstEtag } },
  body: { title: "lost update" },
});
if (stale.error?.code !== "stale_revision") throw new Error(`stale: expected 412, got ${stale.response.status}`);
print({ step: "stale", status: stale.response.status, code: stale.error.code, current: stale.error.current.title });

// The loop starts from the stale copy too: one 412, then the change lands on `current`.
const { note, attempts } = await updateWithRetry(read.data, firstEtag, (held) => ({
  ...held,
  body: "appended by the retry loop",
}));
print({ step: "retried", attempts, title: note.title, body: note.body });

const page = await client.GET("/v1/note", { params: { query: { limit: 10 } } });
if (!page.data) throw new Error(`query: ${page.response.status} ${page.error.code}`);
print({ step: "query", status: page.response.status, ids: page.data.items.map((item) => item.id) });
