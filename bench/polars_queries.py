"""Polars' side of `tidemark-bench queries`: the same statements through Polars' SQL interface
(`pl.SQLContext` over lazy frames) on the same Parquet files.

usage: polars_queries.py FILES_TXT ACCOUNTS_CSV RUNS QUERIES_JSON

Arguments as for duckdb_queries.py. The table is `scan_parquet` over the active files with
hive partitioning (`source=…/date=…/` in the paths). Each statement runs once to warm up, then
RUNS times; the median is printed with the row count, as JSON, one object per statement. A
statement Polars' SQL cannot run is reported with its error instead of a time.
"""

import json
import statistics
import sys
import time

import polars as pl

files_txt, accounts_csv, runs, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
files = [line for line in open(files_txt).read().splitlines() if line]

ad_performance = pl.scan_parquet(
    files,
    hive_partitioning=True,
    hive_schema={"source": pl.String, "date": pl.Date},
)
accounts = pl.read_csv(accounts_csv).lazy()
ctx = pl.SQLContext(ad_performance=ad_performance, accounts=accounts)

answers = []
for q in queries:
    try:
        rows = ctx.execute(q["sql"]).collect().height
    except Exception as e:  # noqa: BLE001 - reported, not fatal: Polars' SQL is a subset
        answers.append({"id": q["id"], "error": str(e).splitlines()[0][:200]})
        continue
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        ctx.execute(q["sql"]).collect()
        times.append(time.perf_counter() - started)
    answers.append({"id": q["id"], "seconds": statistics.median(times), "rows": rows})
print(json.dumps(answers))
