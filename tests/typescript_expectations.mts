// What the types generated from the served spec must say (tests/server/test_clients.py compiles
// this with `tsc --strict`). Each @ts-expect-error line must be an error: were a type too
// loose (`any`, an index signature), tsc would report the directive as unused and fail.
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

// a merge patch of declared properties type-checks (an index signature of nulls broke it)
export const patch: Schemas["note_patch"] = { title: "x", body: null, counter: 3 };
export const userPatch: Schemas["user_patch"] = { name: "Ada", country: "GB", address: { city: null } };
// @ts-expect-error: title is required, so it cannot be removed
export const removeRequired: Schemas["note_patch"] = { title: null };
// @ts-expect-error: a title is a string
export const wrongType: Schemas["note_input"] = { title: 5 };
// @ts-expect-error: country is one of the declared codes
export const notAnEnum: Schemas["user_patch"] = { country: "XX" };

// the 412 of a note's operations carries a note
type Stale = paths["/v1/note/{id}"]["put"]["responses"][412]["content"]["application/problem+json"];
export const current = (stale: Stale): Schemas["note"] => stale.current;
export const code = (stale: Stale): "stale_revision" => stale.code;
// @ts-expect-error: not a user
export const notAUser = (stale: Stale): Schemas["user"] => stale.current;

// integers are numbers (64-bit in the spec: `format: int64`)
export const counter: number | undefined = ({} as Schemas["note"]).counter;
// HEAD is an operation of its own
export type Head = paths["/v1/note/{id}"]["head"];
