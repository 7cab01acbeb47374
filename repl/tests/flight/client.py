"""A real Flight SQL client (the Python ADBC driver, as notebooks and Superset use it) driving
`tidemark serve`. Run by repl/tests/it/flight.rs; each mode prints one JSON object.

  client.py smoke  URL USER PASSWORD
  client.py auth   URL USER PASSWORD SHORT_TTL_URL
  client.py grants URL USER PASSWORD
  client.py load   URL USER PASSWORD CLIENTS SECONDS
  client.py memory URL USER PASSWORD
  client.py split  URL USER PASSWORD
  client.py cancel URL USER PASSWORD
  client.py tls    URL USER PASSWORD ROOT_CERT_PEM_FILE
  client.py queries URL USER PASSWORD SQL [SQL ...]
  client.py between URL USER PASSWORD COMMANDS_JSON
  client.py repeat URL USER PASSWORD STOP_FILE SQL
"""

import json
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight

HEADER = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value


def connect(url, user=None, password=None, header=None, root_certs=None):
    kwargs = {}
    if root_certs is not None:
        kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = root_certs
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
        # JDBC and ADBC's qmark paramstyle send ?: numbered in order, bound like $n.
        out["prepared_qmark"] = query(
            conn,
            "SELECT count(*) AS n, sum(installs) AS installs FROM ad_performance WHERE source = ?",
            ("meta",),
        ).to_pylist()
        out["qmarks"] = query(conn, "SELECT ? + 1 AS a, '?' AS q, ? AS b", (41, "x")).to_pylist()
        out["mixed"] = refused(lambda: query(conn, "SELECT ? AS a, $2 AS b", (1, 2)))
        out["version0"] = query(conn, "SELECT sum(clicks) AS clicks FROM ad_performance VERSION AS OF 0").to_pylist()
        out["history"] = query(conn, "DESCRIBE HISTORY ad_performance").column("version").to_pylist()
        out["show_tables"] = query(conn, "SHOW TABLES").column("name").to_pylist()
        out["projected"] = query(
            conn,
            "SELECT source, CAST(date AS VARCHAR) AS day, basis FROM "
            "projected('ad_performance', 'installs', by => 'source', since => '2026-11-01') "
            "WHERE date = DATE '2026-11-01' ORDER BY source",
        ).to_pylist()
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
        out["not_granted_maturity"] = refused(
            lambda: query(conn, "SELECT * FROM maturity('ad_performance', 'installs')")
        )
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


SPLIT_QUERY = "SELECT date, source, campaign_id, ad_id, clicks, installs FROM ad_performance"


def split(url, user, password):
    """A big result offered as several endpoints: ADBC's partitioned execution reads each
    endpoint on its own, and together they hold exactly the rows of the whole result."""
    out = {}
    with connect(url, user, password) as conn:
        cur = conn.cursor()
        partitions, _schema = cur.adbc_execute_partitions(SPLIT_QUERY)
        out["partitions"] = len(partitions)
        parts = []
        for partition in partitions:
            cur.adbc_read_partition(partition)
            parts.append(cur.fetch_arrow_table().to_pylist())
        cur.close()
        whole = query(conn, SPLIT_QUERY).to_pylist()
    out["part_rows"] = [len(p) for p in parts]
    out["whole_rows"] = len(whole)
    key = lambda row: json.dumps(row, default=str, sort_keys=True)  # noqa: E731
    out["same_rows"] = sorted(map(key, (r for p in parts for r in p))) == sorted(map(key, whole))
    out["days_per_part"] = [len({r["date"] for r in p}) for p in parts]
    return out


def protobuf_field(number, payload):
    """One length-delimited protobuf field (wire type 2)."""
    tag, length, size = (number << 3) | 2, b"", len(payload)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([tag]) + length + payload


def statement_query(sql):
    """A Flight SQL CommandStatementQuery packed in google.protobuf.Any, as a descriptor command."""
    command = protobuf_field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return protobuf_field(1, type_url) + protobuf_field(2, command)


def cancel(url, user, password):
    """A long query cancelled with the CancelFlightInfo action while its DoGet streams: the
    reader gets a cancellation error promptly and the server serves the next query."""
    out = {}
    client = flight.FlightClient(url)
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(user, password)])
    descriptor = flight.FlightDescriptor.for_command(statement_query("SELECT count(*) AS n FROM range(1, 1000000000000)"))
    info = client.get_flight_info(descriptor, options)
    action = flight.Action("CancelFlightInfo", protobuf_field(1, info.serialize()))
    sent = {}

    def cancel_soon():
        time.sleep(1.5)
        sent["at"] = time.monotonic()
        sent["answers"] = [r.body.to_pybytes() for r in client.do_action(action, options)]

    canceller = threading.Thread(target=cancel_soon)
    canceller.start()
    # pyarrow reports a CANCELLED stream as KeyboardInterrupt (its code for an interrupted
    # call), raised here in the main thread: catch everything.
    try:
        client.do_get(info.endpoints[0].ticket, options).read_all()
        out["error"] = None
    except BaseException as e:  # noqa: BLE001
        out["error"] = f"{type(e).__name__}: {e}"
    ended = time.monotonic()
    canceller.join(30)
    out["running_before_cancel"] = "at" in sent
    answers = sent.get("answers", [])
    # CancelFlightInfoResult { status = 1 (CANCELLED) } is the two bytes 08 01.
    out["cancel_status"] = answers[0].hex() if answers else None
    out["stopped_within_s"] = round(ended - sent.get("at", float("-inf")), 2)
    out["cancel_again"] = [r.body.to_pybytes().hex() for r in client.do_action(action, options)][0]
    with connect(url, user, password) as conn:
        out["after"] = query(conn, "SELECT 1 AS one").to_pylist()
    return out


def tls(url, user, password, root_cert_file):
    """Over TLS with the server's certificate as the trusted root; plain text is refused."""
    root = open(root_cert_file).read()
    out = {}
    with connect(url, user, password, root_certs=root) as conn:
        out["query"] = query(conn, "SELECT count(*) AS n FROM ad_performance").to_pylist()
    plain = url.replace("grpc+tls://", "grpc://")
    out["plaintext"] = refused(lambda: query(connect(plain, user, password), "SELECT 1"))
    out["untrusted"] = refused(lambda: query(connect(url, user, password), "SELECT 1"))
    return out


def queries(url, user, password, statements):
    """Each statement's rows, or its error, in order, over one connection."""
    out = []
    with connect(url, user, password) as conn:
        for sql in statements:
            try:
                out.append({"rows": query(conn, sql).to_pylist()})
            except Exception as e:  # noqa: BLE001 - the test checks the text
                out.append({"error": str(e)})
    return {"results": out}


def between(url, user, password, commands):
    """On one connection: run each command (a process that commits to the warehouse), and after
    each, the same statement plainly and as one prepared statement executed again (ADBC keeps
    the prepared handle while the SQL is unchanged). The rows seen after each command."""
    plain = "SELECT count(*) AS n, sum(clicks) AS clicks FROM perf"
    prepared = "SELECT sum(clicks) AS clicks FROM perf WHERE account_id = ?"
    out = []
    with connect(url, user, password) as conn:
        query(conn, "SELECT 1")
        cur = conn.cursor()
        for command in commands:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            cur.execute(prepared, ("a1",))
            out.append(
                {
                    "plain": query(conn, plain).to_pylist(),
                    "prepared": cur.fetch_arrow_table().to_pylist(),
                }
            )
        cur.close()
    return {"after": out}


def repeat(url, user, password, stop_file, sql):
    """Run `sql` again and again on one connection until `stop_file` exists (and at least
    once after), creating `stop_file`.started after the first answer: every answer's rows as
    lists, and every error's message."""
    import os

    conn = connect(url, user, password)
    answers, errors = [], []
    while True:
        stopping = os.path.exists(stop_file)
        try:
            table = query(conn, sql)
            answers.append([list(row.values()) for row in table.to_pylist()])
        except Exception as e:  # an error is an answer too: reported, not fatal
            errors.append(str(e)[:400])
        # Tell the writer the reader is running (it waits for this before writing).
        open(stop_file + ".started", "w").close()
        if stopping:
            break
    conn.close()
    return {"answers": answers, "errors": errors}


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
    elif mode == "split":
        out = split(url, user, password)
    elif mode == "cancel":
        out = cancel(url, user, password)
    elif mode == "tls":
        out = tls(url, user, password, rest[0])
    elif mode == "queries":
        out = queries(url, user, password, rest)
    elif mode == "repeat":
        out = repeat(url, user, password, rest[0], rest[1])
    elif mode == "between":
        out = between(url, user, password, json.loads(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
