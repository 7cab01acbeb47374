"""A real Flight SQL client (the Python ADBC driver, as notebooks and Superset use it) driving
`tidemark serve`. Run by repl/tests/it/flight.rs; each mode prints one JSON object.

  client.py smoke  URL USER PASSWORD
  client.py auth   URL USER PASSWORD SHORT_TTL_URL
  client.py grants URL USER PASSWORD
  client.py load   URL USER PASSWORD CLIENTS SECONDS
  client.py memory URL USER PASSWORD
"""

import json
import sys
import threading
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight

HEADER = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value


def connect(url, user=None, password=None, header=None):
    kwargs = {}
    if user is not None:
        kwargs["username"] = user
        kwargs["password"] = password
    if header is not None:
        kwargs[HEADER] = header
    return flightsql.connect(url, db_kwargs=kwargs, autocommit=True)


def query(conn, sql, params=None):
    cur = conn.cursor()
    try:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return cur.fetch_arrow_table()
    finally:
        cur.close()


def table_names(conn):
    """Every table the server lists (GetCatalogs, GetDbSchemas, GetTables), sorted."""
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    return sorted(
        t["table_name"]
        for c in objects
        for s in (c["catalog_db_schemas"] or [])
        for t in (s["db_schema_tables"] or [])
    )


def refused(fn):
    """The error text when fn fails, else None."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any refusal counts, its text is checked
        return str(e)
    return None


def smoke(url, user, password):
    out = {}
    with connect(url, user, password) as conn:
        out["tables"] = table_names(conn)
        out["table_types"] = sorted(conn.adbc_get_table_types())
        schema = conn.adbc_get_table_schema("channel_daily", db_schema_filter="public")
        out["channel_daily_columns"] = schema.names
        table = query(conn, "SELECT source, sum(clicks) AS clicks FROM ad_performance GROUP BY source ORDER BY source")
        out["clicks"] = table.to_pylist()
        out["clicks_types"] = [str(t) for t in table.schema.types]
        prepared = query(
            conn,
            "SELECT count(*) AS n, sum(installs) AS installs FROM ad_performance WHERE source = $1",
            ("meta",),
        )
        out["prepared"] = prepared.to_pylist()
        out["version0"] = query(conn, "SELECT sum(clicks) AS clicks FROM ad_performance VERSION AS OF 0").to_pylist()
        out["history"] = query(conn, "DESCRIBE HISTORY ad_performance").column("version").to_pylist()
        out["show_tables"] = query(conn, "SHOW TABLES").column("name").to_pylist()
        out["writes"] = refused(lambda: query(conn, "REFRESH MART channel_daily"))
        out["bad_sql"] = refused(lambda: query(conn, "SELECT * FROM ad_perfomance"))
    return out


def auth(url, user, password, short_url):
    out = {}
    out["no_credentials"] = refused(lambda: query(connect(url), "SELECT 1"))
    out["wrong_password"] = refused(lambda: query(connect(url, user, "not-the-password"), "SELECT 1"))
    out["forged_token"] = refused(lambda: query(connect(url, header="Bearer dGlkZW1hcms.Zm9yZ2Vk"), "SELECT 1"))
    # A genuine token from the short-lived server, used after it expired.
    client = flight.FlightClient(short_url)
    key, value = client.authenticate_basic_token(user, password)
    out["token_works"] = query(connect(short_url, header=value.decode()), "SELECT 1 AS one").to_pylist()
    time.sleep(2.5)
    out["expired_token"] = refused(lambda: query(connect(short_url, header=value.decode()), "SELECT 1"))
    return out


def grants(url, user, password):
    out = {}
    with connect(url, user, password) as conn:
        out["tables"] = table_names(conn)
        out["granted"] = query(conn, "SELECT count(*) AS n FROM channel_daily").to_pylist()
        out["not_granted"] = refused(lambda: query(conn, "SELECT * FROM ad_performance"))
        out["not_granted_history"] = refused(lambda: query(conn, "DESCRIBE HISTORY ad_performance"))
        out["not_granted_time_travel"] = refused(
            lambda: query(conn, "SELECT * FROM ad_performance VERSION AS OF 0")
        )
        out["writes"] = refused(lambda: query(conn, "REFRESH MART channel_daily"))
        out["ddl"] = refused(
            lambda: query(conn, "CREATE EXTERNAL TABLE x (a VARCHAR) STORED AS CSV LOCATION '/etc/passwd'")
        )
        out["information_schema"] = query(
            conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).column("table_name").to_pylist()
    return out


def load(url, user, password, clients, seconds):
    expected = None
    with connect(url, user, password) as conn:
        expected = query(conn, LOAD_QUERY).to_pylist()
    results = {"queries": 0, "wrong": 0, "errors": []}
    lock = threading.Lock()
    # Every client connects (logs in) first; then all query together for `seconds`.
    ready = threading.Barrier(clients)
    start = {}

    def worker(i):
        try:
            with connect(url, user, password) as conn:
                query(conn, "SELECT 1")
                if ready.wait() == 0:
                    start["at"] = time.monotonic()
                while "at" not in start:
                    time.sleep(0.001)
                deadline = start["at"] + seconds
                while time.monotonic() < deadline:
                    got = query(conn, LOAD_QUERY).to_pylist()
                    with lock:
                        results["queries"] += 1
                        if got != expected:
                            results["wrong"] += 1
        except Exception as e:  # noqa: BLE001
            with lock:
                results["errors"].append(f"client {i}: {e}")
            ready.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with connect(url, user, password) as conn:
        results["after"] = query(conn, "SELECT 1 AS one").to_pylist()
    return results


LOAD_QUERY = (
    "SELECT source, date, sum(clicks) AS clicks, sum(installs) AS installs "
    "FROM ad_performance GROUP BY source, date ORDER BY source, date"
)


def memory(url, user, password):
    out = {"small": [], "small_errors": []}
    stop = threading.Event()

    def small():
        with connect(url, user, password) as conn:
            while not stop.is_set():
                try:
                    out["small"].append(query(conn, "SELECT count(*) AS n FROM ad_performance").to_pylist())
                except Exception as e:  # noqa: BLE001
                    out["small_errors"].append(str(e))
                time.sleep(0.05)

    threads = [threading.Thread(target=small) for _ in range(3)]
    for t in threads:
        t.start()
    with connect(url, user, password) as conn:
        out["big"] = refused(
            lambda: query(conn, "SELECT array_agg(value) AS everything FROM range(1, 50000000)")
        )
    stop.set()
    for t in threads:
        t.join()
    out["small_ok"] = len(out["small"])
    out["small"] = out["small"][:1]
    return out


def main():
    mode, url, user, password, *rest = sys.argv[1:]
    if mode == "smoke":
        out = smoke(url, user, password)
    elif mode == "auth":
        out = auth(url, user, password, rest[0])
    elif mode == "grants":
        out = grants(url, user, password)
    elif mode == "load":
        out = load(url, user, password, int(rest[0]), float(rest[1]))
    elif mode == "memory":
        out = memory(url, user, password)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
