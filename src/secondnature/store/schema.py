"""The store's schema: named migrations, applied in order, each once (`LessonStore` records which ran).

Append a migration to change the schema; never edit one that has shipped, since stores in the field
have already run it.
"""
from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    ("001_initial", """
    CREATE TABLE runs (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
        steps_done INTEGER NOT NULL DEFAULT 0, rollouts_used INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE rollouts (id TEXT PRIMARY KEY, run_id INTEGER, scope TEXT, task_id TEXT NOT NULL,
        messages TEXT NOT NULL, completion TEXT NOT NULL, score REAL NOT NULL, feedback TEXT NOT NULL,
        lesson_ids TEXT NOT NULL, model TEXT NOT NULL, seed INTEGER, sample INTEGER,
        prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, error TEXT, purpose TEXT,
        created_at TEXT NOT NULL);
    CREATE INDEX rollouts_run ON rollouts(run_id);
    CREATE TABLE reflections (id TEXT PRIMARY KEY, run_id INTEGER, scope TEXT, model TEXT NOT NULL,
        rollout_ids TEXT NOT NULL, prompt TEXT NOT NULL, raw TEXT NOT NULL, edits TEXT NOT NULL,
        parse_error TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE lessons (id TEXT PRIMARY KEY, seq INTEGER UNIQUE NOT NULL, text TEXT NOT NULL,
        scope TEXT NOT NULL, evidence TEXT NOT NULL, reflection_id TEXT, parent TEXT,
        uses INTEGER NOT NULL DEFAULT 0, gain REAL NOT NULL DEFAULT 0, status TEXT NOT NULL,
        created_at TEXT NOT NULL);
    CREATE TABLE revisions (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, parent INTEGER, lesson_ids TEXT NOT NULL,
        note TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX revisions_scope ON revisions(scope, id);
    CREATE TABLE gates (id INTEGER PRIMARY KEY, run_id INTEGER, scope TEXT NOT NULL, current_revision INTEGER,
        proposed TEXT NOT NULL, reflection_id TEXT, n INTEGER NOT NULL, current_score REAL NOT NULL,
        proposed_score REAL NOT NULL, wins INTEGER NOT NULL, losses INTEGER NOT NULL, p_value REAL NOT NULL,
        decision TEXT NOT NULL, reason TEXT NOT NULL, revision_id INTEGER, created_at TEXT NOT NULL);
    CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER,
        completion_tokens INTEGER, latency_s REAL, created_at TEXT NOT NULL);
    """),
    # full-text indexes for retrieval: lesson text and tags, and the prompts of the tasks each scope learned on
    ("002_retrieval", """
    ALTER TABLE lessons ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    CREATE VIRTUAL TABLE lesson_index USING fts5(id UNINDEXED, scope UNINDEXED, text, tags);
    INSERT INTO lesson_index SELECT id, scope, text, '' FROM lessons;
    CREATE VIRTUAL TABLE prompt_index USING fts5(scope UNINDEXED, task_id UNINDEXED, prompt);
    """),
    # leave-one-out credit measured by curation, and why a lesson was retired
    ("003_credit", """
    ALTER TABLE lessons ADD COLUMN loo REAL;
    ALTER TABLE lessons ADD COLUMN loo_n INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE lessons ADD COLUMN note TEXT NOT NULL DEFAULT '';
    """),
    # document frequencies of the prompt index's words, so routing can query the rarest words first
    ("004_prompt_vocab", """
    CREATE VIRTUAL TABLE prompt_vocab USING fts5vocab(prompt_index, 'row');
    """),
    ("005_distillations", """
    CREATE TABLE distillations (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, revision INTEGER, adapter TEXT NOT NULL,
        base TEXT NOT NULL, config TEXT NOT NULL, report TEXT NOT NULL, created_at TEXT NOT NULL);
    """),
    ("006_tool_calls", """
    ALTER TABLE completions ADD COLUMN tool_calls TEXT NOT NULL DEFAULT '[]';
    """),
    # a gate's place in its run (step, candidate): a resumed step records its gates again in place, not twice
    ("007_gate_step", """
    ALTER TABLE gates ADD COLUMN step INTEGER;
    ALTER TABLE gates ADD COLUMN candidate INTEGER;
    CREATE UNIQUE INDEX gates_in_run ON gates (run_id, step, candidate);
    """),
    # traffic through `serve` (or imported from an application's logs) and the feedback that scores it later
    ("008_traffic", """
    CREATE TABLE calls (id TEXT PRIMARY KEY, scope TEXT NOT NULL, model TEXT NOT NULL, messages TEXT NOT NULL,
        params TEXT NOT NULL, reply TEXT NOT NULL, tool_calls TEXT NOT NULL, status TEXT NOT NULL, revision INTEGER,
        lesson_ids TEXT NOT NULL, conversation TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
        latency_s REAL, error TEXT NOT NULL, learn INTEGER NOT NULL, source TEXT NOT NULL, created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE INDEX calls_scope ON calls(scope, created_at);
    CREATE INDEX calls_conversation ON calls(conversation);
    CREATE TABLE feedback (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, conversation TEXT NOT NULL, value REAL,
        comment TEXT NOT NULL, demonstration TEXT NOT NULL, source TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX feedback_call ON feedback(call_id);
    CREATE INDEX feedback_conversation ON feedback(conversation);
    """),
    # what a call cost, in the currency of the prices serve was given (or as the upstream reported it)
    ("009_call_cost", """
    ALTER TABLE calls ADD COLUMN cost REAL;
    """),
    # a person's pages (store/pages.py) filter lessons by scope and status, newest first
    ("010_pages", """
    CREATE INDEX lessons_scope_status ON lessons(scope, status, seq);
    CREATE INDEX lessons_status ON lessons(status, seq);
    """),
]
