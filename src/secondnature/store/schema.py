"""The store's schema: named migrations, applied in order, each once (`LessonStore` records which ran).

Append a migration to change the schema; never edit one that has shipped, since stores in the field
have already run it. Where PostgreSQL cannot run a migration's SQLite SQL as it is (FTS5 tables, rowid, REAL being
four bytes there, INTEGER PRIMARY KEY numbering itself), POSTGRES holds its variant under the same name; the same
rules apply to those.
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
    # the vocabulary's document frequencies as a table the store keeps: fts5vocab counts a word by reading its whole
    # list of documents, so looking up a common word cost in proportion to the index
    ("011_prompt_terms", """
    CREATE TABLE prompt_terms (term TEXT PRIMARY KEY, doc INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO prompt_terms SELECT term, doc FROM prompt_vocab;
    DROP TABLE prompt_vocab;
    """),
]

# PostgreSQL: REAL is DOUBLE PRECISION and INTEGER is BIGINT (SQLite's are 8 bytes); an id that SQLite numbers itself
# is BIGSERIAL; `rowid` keeps the order rows were written in, which SQLite gives every table; full-text search is a
# tsvector column ('simple': lower case, no stemming, as FTS5's unicode61) with a GIN index, and prompt_vocab a table
# a trigger kept (document frequencies, what fts5vocab reads off the index) until 011 left the counting to the store.
POSTGRES: dict[str, str] = {
    "001_initial": """
    CREATE TABLE runs (id BIGSERIAL PRIMARY KEY, scope TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
        steps_done BIGINT NOT NULL DEFAULT 0, rollouts_used BIGINT NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE rollouts (id TEXT PRIMARY KEY, run_id BIGINT, scope TEXT, task_id TEXT NOT NULL,
        messages TEXT NOT NULL, completion TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, feedback TEXT NOT NULL,
        lesson_ids TEXT NOT NULL, model TEXT NOT NULL, seed BIGINT, sample BIGINT,
        prompt_tokens BIGINT, completion_tokens BIGINT, latency_s DOUBLE PRECISION, error TEXT, purpose TEXT,
        created_at TEXT NOT NULL, rowid BIGSERIAL);
    CREATE INDEX rollouts_run ON rollouts(run_id);
    CREATE INDEX rollouts_rowid ON rollouts(rowid);
    CREATE TABLE reflections (id TEXT PRIMARY KEY, run_id BIGINT, scope TEXT, model TEXT NOT NULL,
        rollout_ids TEXT NOT NULL, prompt TEXT NOT NULL, raw TEXT NOT NULL, edits TEXT NOT NULL,
        parse_error TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE lessons (id TEXT PRIMARY KEY, seq BIGINT UNIQUE NOT NULL, text TEXT NOT NULL,
        scope TEXT NOT NULL, evidence TEXT NOT NULL, reflection_id TEXT, parent TEXT,
        uses BIGINT NOT NULL DEFAULT 0, gain DOUBLE PRECISION NOT NULL DEFAULT 0, status TEXT NOT NULL,
        created_at TEXT NOT NULL);
    CREATE TABLE revisions (id BIGSERIAL PRIMARY KEY, scope TEXT NOT NULL, parent BIGINT, lesson_ids TEXT NOT NULL,
        note TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX revisions_scope ON revisions(scope, id);
    CREATE TABLE gates (id BIGSERIAL PRIMARY KEY, run_id BIGINT, scope TEXT NOT NULL, current_revision BIGINT,
        proposed TEXT NOT NULL, reflection_id TEXT, n BIGINT NOT NULL, current_score DOUBLE PRECISION NOT NULL,
        proposed_score DOUBLE PRECISION NOT NULL, wins BIGINT NOT NULL, losses BIGINT NOT NULL,
        p_value DOUBLE PRECISION NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, revision_id BIGINT,
        created_at TEXT NOT NULL);
    CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens BIGINT,
        completion_tokens BIGINT, latency_s DOUBLE PRECISION, created_at TEXT NOT NULL);
    """,
    "002_retrieval": """
    ALTER TABLE lessons ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE lesson_index (id TEXT NOT NULL, scope TEXT, text TEXT NOT NULL, tags TEXT NOT NULL,
        doc tsvector GENERATED ALWAYS AS (to_tsvector('simple', text || ' ' || tags)) STORED);
    CREATE INDEX lesson_index_doc ON lesson_index USING GIN (doc);
    CREATE INDEX lesson_index_id ON lesson_index (id);
    INSERT INTO lesson_index (id, scope, text, tags) SELECT id, scope, text, '' FROM lessons;
    CREATE TABLE prompt_index (scope TEXT NOT NULL, task_id TEXT NOT NULL, prompt TEXT NOT NULL,
        doc tsvector GENERATED ALWAYS AS (to_tsvector('simple', prompt)) STORED);
    CREATE INDEX prompt_index_doc ON prompt_index USING GIN (doc);
    CREATE INDEX prompt_index_scope ON prompt_index (scope);
    """,
    "003_credit": """
    ALTER TABLE lessons ADD COLUMN loo DOUBLE PRECISION;
    ALTER TABLE lessons ADD COLUMN loo_n BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE lessons ADD COLUMN note TEXT NOT NULL DEFAULT '';
    """,
    "004_prompt_vocab": """
    CREATE TABLE prompt_vocab (term TEXT PRIMARY KEY, doc BIGINT NOT NULL);
    INSERT INTO prompt_vocab SELECT word, ndoc FROM ts_stat('SELECT doc FROM prompt_index');
    CREATE FUNCTION prompt_vocab_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO prompt_vocab (term, doc) SELECT lexeme, 1 FROM unnest(NEW.doc)
            ON CONFLICT (term) DO UPDATE SET doc = prompt_vocab.doc + 1;
        RETURN NEW;
    END $$;
    CREATE TRIGGER prompt_vocab_count AFTER INSERT ON prompt_index FOR EACH ROW EXECUTE FUNCTION prompt_vocab_count();
    """,
    "005_distillations": """
    CREATE TABLE distillations (id BIGSERIAL PRIMARY KEY, scope TEXT NOT NULL, revision BIGINT, adapter TEXT NOT NULL,
        base TEXT NOT NULL, config TEXT NOT NULL, report TEXT NOT NULL, created_at TEXT NOT NULL);
    """,
    "008_traffic": """
    CREATE TABLE calls (id TEXT PRIMARY KEY, scope TEXT NOT NULL, model TEXT NOT NULL, messages TEXT NOT NULL,
        params TEXT NOT NULL, reply TEXT NOT NULL, tool_calls TEXT NOT NULL, status TEXT NOT NULL, revision BIGINT,
        lesson_ids TEXT NOT NULL, conversation TEXT NOT NULL, prompt_tokens BIGINT, completion_tokens BIGINT,
        latency_s DOUBLE PRECISION, error TEXT NOT NULL, learn BIGINT NOT NULL, source TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, rowid BIGSERIAL);
    CREATE INDEX calls_scope ON calls(scope, created_at);
    CREATE INDEX calls_conversation ON calls(conversation);
    CREATE TABLE feedback (id BIGSERIAL PRIMARY KEY, call_id TEXT NOT NULL, conversation TEXT NOT NULL,
        value DOUBLE PRECISION, comment TEXT NOT NULL, demonstration TEXT NOT NULL, source TEXT NOT NULL,
        created_at TEXT NOT NULL);
    CREATE INDEX feedback_call ON feedback(call_id);
    CREATE INDEX feedback_conversation ON feedback(conversation);
    """,
    "009_call_cost": """
    ALTER TABLE calls ADD COLUMN cost DOUBLE PRECISION;
    """,
    # the store counts the words itself from now on, as on SQLite, so counts and lookups split words alike
    "011_prompt_terms": """
    ALTER TABLE prompt_vocab RENAME TO prompt_terms;
    DROP TRIGGER prompt_vocab_count ON prompt_index;
    DROP FUNCTION prompt_vocab_count();
    """,
}
