"""The lesson store: lessons, revisions, gate records, rollouts and reflections, and the completion cache.
One SQLite file by default (sqlite.py), its named migrations in schema.py, its errors and their fixes in errors.py."""
from .errors import HeadMoved, StoreError
from .schema import MIGRATIONS
from .sqlite import APP_ID, LessonStore, default_path, fresh_store, open_store

__all__ = ["APP_ID", "MIGRATIONS", "HeadMoved", "LessonStore", "StoreError", "default_path", "fresh_store",
           "open_store"]
