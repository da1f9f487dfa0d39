"""Replication conflicts, the pure part: ``rules`` (the merge), ``bookkeeping`` (what
writes record for it) and ``sets`` (observed-remove sets). Reading leaves and writing
merges is the store's (``store.reconciler``, ``store.sweeper``)."""
