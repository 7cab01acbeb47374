"""DuckDB's side of the ingest comparison (bench/src/ingest.rs): read Meta insights pages
(gzipped JSON, {"data": [row, ...], "paging": ...}) with read_json, one row per insight row,
and write them to one Parquet file. Prints {"seconds": median, "rows": n} as JSON.

  duckdb_ingest.py GLOB OUT_PARQUET RUNS
"""

import json
import statistics
import sys
import time

import duckdb


def main():
    glob, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect()
    copy = (
        "COPY (SELECT unnest(d) FROM (SELECT unnest(data) AS d "
        f"FROM read_json('{glob}', format = 'auto'))) TO '{out}' (FORMAT parquet)"
    )
    times = []
    for run in range(runs + 1):
        started = time.perf_counter()
        con.execute(copy)
        elapsed = time.perf_counter() - started
        if run > 0:
            times.append(elapsed)
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    print(json.dumps({"seconds": statistics.median(times), "rows": rows}))


if __name__ == "__main__":
    main()
