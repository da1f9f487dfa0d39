"""Replication conflicts: ``rules`` (the merge, pure), ``bookkeeping`` (what writes
record for it, pure), ``reconciler`` (reading leaves, writing merges), ``sweeper``
(a pass over every conflicted document)."""
