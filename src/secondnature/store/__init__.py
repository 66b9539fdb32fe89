"""The lesson store: lessons, revisions, gate records, rollouts and reflections, and the completion cache.
One SQLite file by default (sqlite.py), its named migrations in schema.py."""
from .schema import MIGRATIONS
from .sqlite import APP_ID, LessonStore, StoreError, default_path, fresh_store, open_store

__all__ = ["APP_ID", "MIGRATIONS", "LessonStore", "StoreError", "default_path", "fresh_store", "open_store"]
