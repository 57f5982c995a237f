"""The alpha migration lane: browser history (IndexedDB) imported in the background, never in chat's way."""
