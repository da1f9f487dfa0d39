"""Fault injection for tests: ``FaultProxy``, an HTTP/1.1-aware TCP proxy between a
sidecar and CouchDB whose rules delay, hold, drop, reset, refuse, hang or cut the answer
of chosen requests, and which records every request that passed (see ``proxy.py``)."""

from .proxy import ACTIONS, Exchange, FaultProxy, Rule

__all__ = ["ACTIONS", "Exchange", "FaultProxy", "Rule"]
