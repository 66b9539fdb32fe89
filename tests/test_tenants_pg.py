"""`serve --tenants FILE --tenant-dir postgresql://...`: each tenant in a schema of its own, `tenant_<name>`, made once
and reused. Through the real server (uvicorn, the openai SDK, the page at /ui) two tenants write calls, feedback and
lessons and each sees only its own; names with `.` and `-` (and, below the tenants file, any character at all) are
quoted safely; a role that may not create schemas, a long name and `--store postgresql://` with `--tenants` are
refused with the fix."""
from __future__ import annotations

import json

import httpx2
import openai
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from responder import Responder, serve_in_thread

from secondnature.cli import main
from secondnature.serve import ServeConfig, Upstream, load_tenants, make_app
from secondnature.serve.tenants import schema_of
from secondnature.store import LessonStore, StoreError, open_store, postgres
from secondnature.store import traffic as db
from secondnature.types import Call, Lesson

KEYS = {"acme": "sk-acme", "be.ta-2": "sk-beta"}


@pytest.fixture
def url(postgres_cluster) -> str:
    made = postgres_cluster.create_db()
    yield made
    postgres_cluster.drop_db(made)


@pytest.fixture
def tenants_file(tmp_path):
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(KEYS))
    return path


def schemas(url: str) -> dict[str, list[str]]:
    """Schema -> its tables, for the schemas that hold any (and the tenants' ones, empty or not)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT n.nspname, t.tablename FROM pg_namespace n LEFT JOIN pg_tables t "
                            "ON t.schemaname = n.nspname WHERE n.nspname NOT LIKE 'pg\\_%' "
                            "AND n.nspname <> 'information_schema' ORDER BY 1, 2").fetchall()
    found: dict[str, list[str]] = {}
    for schema, table in rows:
        found.setdefault(schema, [])
        if table:
            found[schema].append(table)
    return found


def add_lesson(store: LessonStore, scope: str, text: str) -> None:
    x = store.add_lesson(Lesson("", text, scope))
    head = store.head(scope)
    store.commit_revision(scope, [*(head.lesson_ids if head else ()), x.id], "by hand")


def test_two_tenants_through_the_real_server_each_see_only_their_own_schema(url, tenants_file):
    tenants = load_tenants(tenants_file, store_dir=url)
    assert set(schemas(url)) >= {"tenant_acme", "tenant_be.ta-2"}
    for name, text in (("acme", "ACME-ONLY LESSON"), ("be.ta-2", "BETA-ONLY LESSON")):
        add_lesson(tenants.open_store(name), "shared-name", text)
    upstream = Responder()
    up_url, up_server = serve_in_thread(upstream.app)
    base, server = serve_in_thread(make_app(ServeConfig(Upstream(up_url), tenants)))
    try:
        clients = {name: openai.OpenAI(base_url=base, api_key=key, max_retries=0) for name, key in KEYS.items()}
        ids = {}
        for name, mine, other in (("acme", "ACME-ONLY", "BETA-ONLY"), ("be.ta-2", "BETA-ONLY", "ACME-ONLY")):
            r = clients[name].chat.completions.create(model="m", messages=[{"role": "user", "content": f"q {name}"}],
                                                      extra_body={"secondnature": {"scope": "shared-name"}})
            sent = json.dumps(upstream.bodies[-1]["messages"])
            assert mine in sent and other not in sent  # the same scope name, each tenant's own lessons
            clients[name].post("/feedback", body={"id": r.id, "comment": f"from {name}", "score": 1}, cast_to=object)
            ids[name] = r.id
        for name, other in (("acme", "be.ta-2"), ("be.ta-2", "acme")):
            c = clients[name]
            assert [x["id"] for x in c.get("/calls", cast_to=object)["data"]] == [ids[name]]
            with pytest.raises(openai.NotFoundError):
                c.get(f"/calls/{ids[other]}", cast_to=object)
            with pytest.raises(openai.NotFoundError):
                c.post("/feedback", body={"id": ids[other], "score": 0}, cast_to=object)
            page = httpx2.get(base.removesuffix("/v1") + "/ui/lessons", headers={"authorization": f"Bearer {KEYS[name]}"})
            assert page.status_code == 200
            assert ("ACME-ONLY" in page.text) == (name == "acme") and ("BETA-ONLY" in page.text) == (name != "acme")
    finally:
        server.should_exit = up_server.should_exit = True
    for name, other in (("acme", "be.ta-2"), ("be.ta-2", "acme")):
        store = tenants.open_store(name)
        assert store.db.execute("SELECT current_schema()").fetchone()[0] == schema_of(name)
        (call,) = db.calls(store)
        assert call.id == ids[name] and db.get_call(store, ids[other]) is None
        assert [f.comment for f in db.feedback(store, call)] == [f"from {name}"]
    found = schemas(url)
    assert found["tenant_acme"] == found["tenant_be.ta-2"] and "calls" in found["tenant_acme"]
    assert found.get("public") == []  # nothing outside the tenants' schemas


def test_schemas_are_made_once_and_reused(url, tenants_file, monkeypatch):
    made = []
    create = postgres.create_schemas
    monkeypatch.setattr(postgres, "create_schemas", lambda u, names: made.append(create(u, names)) or made[-1])
    first = load_tenants(tenants_file, store_dir=url)
    add_lesson(first.open_store("be.ta-2"), "s", "Kept across restarts.")
    again = load_tenants(tenants_file, store_dir=url)  # a restarted server
    assert made == [["tenant_acme", "tenant_be.ta-2"], []]
    assert [x.text for x in again.open_store("be.ta-2").lessons()] == ["Kept across restarts."]
    assert again.open_store("acme").lessons() == []
    assert again.store_path("acme") == first.store_path("acme")


def test_a_role_without_create_uses_schemas_made_for_it_and_is_told_the_fix(postgres_cluster, url, tenants_file):
    postgres_cluster.admin("DO $$ BEGIN CREATE ROLE tenantless LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
                           "END $$")
    database = url.split("@/")[1].split("?")[0]
    as_role = postgres_cluster.url(database, "tenantless")
    with pytest.raises(StoreError, match="may not create the schema") as info:
        load_tenants(tenants_file, store_dir=as_role)
    assert f'GRANT CREATE ON DATABASE "{database}" TO "tenantless"' in str(info.value)
    assert 'CREATE SCHEMA "tenant_acme" AUTHORIZATION "tenantless"' in str(info.value)
    assert "tenant_acme" not in schemas(url)  # nothing was made
    with psycopg.connect(url, autocommit=True) as conn:  # an administrator makes them for the role
        for name in KEYS:
            conn.execute(f'CREATE SCHEMA "{schema_of(name)}" AUTHORIZATION tenantless')
    tenants = load_tenants(tenants_file, store_dir=as_role)
    add_lesson(tenants.open_store("acme"), "s", "Made in a schema made for the role.")
    assert "lessons" in schemas(url)["tenant_acme"]


def test_the_search_path_option_is_built_safely(url):
    given = url + "&options=" + "-c%20statement_timeout%3D5000"
    odd = 'we ird"one\\x'
    made = postgres.in_schema(given, odd)
    assert conninfo_to_dict(made)["options"] == '-c statement_timeout=5000 -csearch_path="we\\ ird""one\\\\x"'
    assert conninfo_to_dict(made)["host"] == conninfo_to_dict(url)["host"]
    assert postgres.create_schemas(url, [odd]) == [odd]
    with psycopg.connect(made) as conn:
        assert conn.execute("SELECT current_schema(), current_setting('statement_timeout')").fetchone() == (odd, "5s")
    store = LessonStore(made)
    assert store.name == conninfo_to_dict(url)["dbname"]
    with pytest.raises(StoreError, match="search_path names does not exist"):
        LessonStore(postgres.in_schema(url, "never_made"))


def test_a_tenant_name_too_long_for_a_schema_is_refused(url, tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"a" * 57: "k"}))
    with pytest.raises(ValueError, match="at most 56"):
        load_tenants(path, store_dir=url)
    path.write_text(json.dumps({"a" * 56: "k"}))
    assert load_tenants(path, store_dir=url).names() == ["a" * 56]


def test_the_command_line_finds_a_tenants_schema_and_refuses_store_with_tenants(url, tenants_file, capsys):
    store = load_tenants(tenants_file, store_dir=url).open_store("be.ta-2")
    db.add_calls(store, [Call("chatcmpl-1", "s", "m", ({"role": "user", "content": "q"},), reply="a", status="done")])
    argv = ["feedback", "chatcmpl-1", "--score", "1", "--tenants", str(tenants_file), "--tenant", "be.ta-2",
            "--tenant-dir", url, "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["call_id"] == "chatcmpl-1"
    assert [f.value for f in db.feedback(store, db.get_call(store, "chatcmpl-1"))] == [1.0]
    assert main([*argv[:-4], "acme", "--tenant-dir", url]) == 2  # acme's schema has no such call
    assert "no call" in capsys.readouterr().err
    assert main(["--store", url, "serve", "--tenants", str(tenants_file), "--upstream", "http://127.0.0.1:9/v1"]) == 2
    assert "--tenant-dir postgresql://" in capsys.readouterr().err
    assert open_store(url).lessons() == []  # the database's own public store, untouched by the tenants
