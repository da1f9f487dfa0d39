"""The workload and its recorder: clients, each bound to one sidecar over one keep-alive
connection, doing one operation at a time on a shared set of document slots, paced to a
total rate, every operation recorded as an ``Op`` (``record.py``).

Operation mix (per client step, on a random slot): reads 40%; If-Match writes 32% (the
counter + 1 and a unique token appended, based on the version the client last saw, up to
3 attempts along the 412's ``current``); blind merge PATCHes 22% (``marks[client]`` set to
the client's next value); replays of an earlier create 3% (same Idempotency-Key and body:
200 with the same id, or 409 once deleted); deletes 3%, each followed by the create of the
slot's next document under a new Idempotency-Key (any client finding a slot without a
document makes that create, with the slot's key: concurrent creates of one key happen).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from .record import CREATE, DELETE, PATCH, READ, WRITE, Op, Version

TYPE = "ledger"
TIMEOUT = 15.0  # seconds a client waits for one answer
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@dataclass
class Slot:
    """Where one of the workload's documents lives: its id, or (between a delete and the
    create that replaces it) the Idempotency-Key of the create to make."""

    name: str
    doc: str | None = None
    key: str | None = None
    generation: int = 0


@dataclass
class World:
    """What the clients share: the slots, the record, the pace."""

    rate: float
    rng: random.Random
    started: float = field(default_factory=time.monotonic)
    slots: list[Slot] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    creates: list[tuple[str, dict]] = field(default_factory=list)  # (key, body) of creates answered
    stopped: bool = False
    _next: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    async def pace(self) -> None:
        """At most ``rate`` operations a second, over all clients together."""
        at = max(self._next, self.now())
        self._next = at + 1 / self.rate
        if at > self.now():
            await asyncio.sleep(at - self.now())

    def begin(self, **fields) -> Op:
        op = Op(len(self.ops), invoked=self.now(), **fields)
        self.ops.append(op)
        return op

    def new_key(self, slot: Slot) -> str:
        slot.generation += 1
        return f"{slot.name}-g{slot.generation}-{self.rng.getrandbits(32):08x}"


class Client:
    def __init__(self, name: str, sidecar: str, base: str, world: World, seed: int) -> None:
        self.name, self.sidecar, self.base, self.world = name, sidecar, base, world
        self.rng = random.Random(seed)
        self.known: dict[str, tuple[str, dict]] = {}  # doc → (rev, representation) last seen
        self.sent = self.marks = 0
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        )
        # one recorded operation is one HTTP request: aiohttp would otherwise send an
        # idempotent request again, unrecorded, when its connection closes unanswered
        # (its own test client switches this off the same way)
        self.session._retry_connection = False

    async def aclose(self) -> None:
        await self.session.close()

    async def run(self) -> None:
        while not self.world.stopped:
            await self.world.pace()
            await self.step(self.rng.choice(self.world.slots))

    async def step(self, slot: Slot) -> None:
        if slot.doc is None:
            await self.create(slot)
            return
        doc, roll = slot.doc, self.rng.random()
        if roll < 0.40:
            await self.read(slot, doc)
        elif roll < 0.72:
            await self.write(slot, doc)
        elif roll < 0.94:
            await self.patch(slot, doc)
        elif roll < 0.97 and self.world.creates:
            key, body = self.rng.choice(self.world.creates)
            await self.call(CREATE, "POST", f"/v1/{TYPE}", None, body=body, key=key, headers={"Idempotency-Key": key})
        else:
            await self.delete(slot, doc)

    # -- operations ---------------------------------------------------------------------

    async def read(self, slot: Slot, doc: str) -> Op:
        op, _ = await self.call(READ, "GET", f"/v1/{TYPE}/{doc}", doc)
        if op.status == 404:
            self.gone(slot, doc)
        return op

    async def write(self, slot: Slot, doc: str) -> None:
        if doc not in self.known and (await self.read(slot, doc)).status != 200:
            return
        for _ in range(3):
            rev, shown = self.known[doc]
            self.sent += 1
            token = f"{self.name}.{self.sent}"
            body = {
                "name": shown["name"],
                "key": shown.get("key", ""),
                "counter": shown.get("counter", 0) + 1,
                "tokens": [*shown.get("tokens", []), token],
                "marks": shown.get("marks", {}),
            }
            headers = {"If-Match": f'"{rev}"'}
            op, _ = await self.call(
                WRITE, "PUT", f"/v1/{TYPE}/{doc}", doc, body=body, headers=headers, token=token, if_match=rev
            )
            if op.status != 412:
                if op.status == 404:
                    self.gone(slot, doc)
                return

    async def patch(self, slot: Slot, doc: str) -> None:
        self.marks += 1
        body = {"marks": {self.name: self.marks}}
        op, _ = await self.call(
            PATCH, "PATCH", f"/v1/{TYPE}/{doc}", doc, body=body, headers=MERGE_PATCH, mark=self.marks
        )
        if op.status == 404:
            self.gone(slot, doc)

    async def delete(self, slot: Slot, doc: str) -> None:
        if doc not in self.known and (await self.read(slot, doc)).status != 200:
            return
        rev = self.known[doc][0]
        op, _ = await self.call(
            DELETE, "DELETE", f"/v1/{TYPE}/{doc}", doc, headers={"If-Match": f'"{rev}"'}, if_match=rev
        )
        if op.status in (204, 404):
            self.gone(slot, doc)
            if slot.doc is None:
                await self.create(slot)

    async def create(self, slot: Slot) -> None:
        key = slot.key or self.world.new_key(slot)
        slot.key = key
        body = {"name": slot.name, "key": key, "counter": 0, "tokens": [], "marks": {}}
        op, _ = await self.call(
            CREATE, "POST", f"/v1/{TYPE}", None, body=body, key=key, headers={"Idempotency-Key": key}
        )
        if op.status in (200, 201) and slot.key == key:
            slot.doc, slot.key = op.doc, None
            self.world.creates.append((key, body))
        elif op.status == 409 and slot.key == key:  # the key's document was deleted meanwhile
            slot.key = self.world.new_key(slot)

    def gone(self, slot: Slot, doc: str) -> None:
        """``doc`` was deleted: its slot waits for its next document."""
        self.known.pop(doc, None)
        if slot.doc == doc:
            slot.doc, slot.key = None, self.world.new_key(slot)

    # -- the recorder -------------------------------------------------------------------

    async def call(
        self, kind: str, method: str, target: str, doc: str | None, *, body=None, headers=None, **fields
    ) -> tuple[Op, dict | None]:
        """Send one request and record it; after a 503 wait its Retry-After, as a caller should."""
        op = self.world.begin(client=self.name, sidecar=self.sidecar, kind=kind, doc=doc, **fields)
        op.request_id = f"{self.name}-{op.index}"
        headers = {"X-Request-Id": op.request_id, **(headers or {})}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        answer = None
        try:
            async with self.session.request(method, self.base + target, data=data, headers=headers) as resp:
                raw = await resp.read()
                op.status, etag = resp.status, resp.headers.get("ETag", "").strip('"')
                op.quorum, op.retry_after = resp.headers.get("Write-Quorum"), resp.headers.get("Retry-After")
            answer = orjson.loads(raw) if raw else None
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            op.error = type(exc).__name__
        op.completed = self.world.now()
        if isinstance(answer, dict):
            self.seen(op, etag, answer)
        if op.status == 503:
            await asyncio.sleep(float(op.retry_after or 1))
        return op, answer

    def seen(self, op: Op, etag: str, answer: dict) -> None:
        shown = answer.get("current") if op.status == 412 else answer
        if op.status in (200, 201, 412) and isinstance(shown, dict) and etag:
            if op.kind == CREATE:
                op.doc = shown.get("id")
            op.version = Version.shown(etag, shown)
            if op.doc and not (op.kind == CREATE and op.status == 200):  # a replay shows the first result
                self.known[op.doc] = (etag, shown)
        elif "code" in answer:
            op.error = answer["code"]
