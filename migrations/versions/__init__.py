"""Migration scripts, applied in order by `artsearch.store.Store.upgrade`."""
