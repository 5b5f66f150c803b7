"""Migration scripts, applied in order by `artsearch.index.store.Store.upgrade`."""
