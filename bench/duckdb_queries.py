"""DuckDB's side of `tidemark-bench queries`: the same statements over the same Parquet files.

usage: duckdb_queries.py FILES_TXT ACCOUNTS_CSV RUNS QUERIES_JSON

FILES_TXT lists the table's active data files (from the Delta log: compaction leaves old files
on disk until vacuum, so a glob would double count). Partition columns (source, date) live in
the paths (`source=…/date=…/`), as Delta writes them; DuckDB reads them with hive
partitioning. Each statement runs once to warm up, then RUNS times; the median is printed
with the row count, as JSON, one object per statement.
"""

import json
import statistics
import sys
import time

import duckdb

files_txt, accounts_csv, runs, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
files = [line for line in open(files_txt).read().splitlines() if line]

con = duckdb.connect()
def quoted(text):
    return "'" + text.replace("'", "''") + "'"


# DDL takes no parameters: the file list is written into the statement.
con.execute(
    "CREATE VIEW ad_performance AS SELECT * FROM read_parquet(["
    + ", ".join(quoted(f) for f in files)
    + "], hive_partitioning = true, hive_types = {'source': VARCHAR, 'date': DATE})"
)
con.execute(f"CREATE TABLE accounts AS SELECT * FROM read_csv({quoted(accounts_csv)}, header = true)")

answers = []
for q in queries:
    # con.sql(...).to_arrow_table(): a DB-API result's Arrow output copies the rows again.
    rows = con.sql(q["sql"]).to_arrow_table().num_rows
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        con.sql(q["sql"]).to_arrow_table()
        times.append(time.perf_counter() - started)
    answers.append({"id": q["id"], "seconds": statistics.median(times), "rows": rows})
print(json.dumps(answers))
