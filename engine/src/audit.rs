//! The restatement audit: how one day's numbers in a table changed from sync to sync, per
//! (source, account, campaign), read from the table's own Delta history.
//!
//! The versions that touched the day are found in the log (add and remove actions whose
//! partition is the day). The day's totals per cell are read at each of them; a row is
//! reported where a cell first appears (`first report`, deltas NULL: the baseline), changes
//! (`restated`), disappears (`removed`, values 0) or comes back. So for every cell the deltas
//! sum to its last reported value minus its first. Versions that changed files but no numbers
//! (compaction) report nothing. Versions whose files a vacuum deleted cannot be read; the audit
//! then starts at the oldest readable version.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::TableType;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{Expr, SessionContext};
use deltalake::DeltaTable;

use crate::error::{Error, Result};
use crate::session::register_version;
use crate::slice::SliceLayout;
use crate::warehouse::{Namespace, ScanWarehouse, Warehouse};

/// The metrics the audit follows, with the type their totals are reported in. A table without
/// one reports it as NULL.
pub const METRICS: [(&str, &str); 6] = [
    ("impressions", "BIGINT"),
    ("clicks", "BIGINT"),
    ("spend", "DECIMAL(38, 6)"),
    ("conversions", "DOUBLE"),
    ("installs", "BIGINT"),
    ("revenue", "DECIMAL(38, 6)"),
];

fn arrow_type(sql_type: &str) -> DataType {
    match sql_type {
        "BIGINT" => DataType::Int64,
        "DOUBLE" => DataType::Float64,
        _ => DataType::Decimal128(38, 6),
    }
}

/// The columns `restatements(…)` returns.
pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("version", DataType::UInt64, false),
        Field::new(
            "changed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("change", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("campaign_name", DataType::Utf8, true),
    ];
    for (metric, sql_type) in METRICS {
        fields.push(Field::new(metric, arrow_type(sql_type), true));
        fields.push(Field::new(
            format!("{metric}_delta"),
            arrow_type(sql_type),
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// What to audit: a table's day, optionally one source and account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRequest {
    pub table: String,
    pub day: NaiveDate,
    pub source: Option<String>,
    pub account: Option<String>,
}

/// A version that touched the day, with its commit time (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Touch {
    version: u64,
    committed_ms: Option<i64>,
}

/// The versions from `first` on whose commits added or removed files of the day's partitions.
async fn versions_touching(
    table: &DeltaTable,
    name: &str,
    date_column: &str,
    day: &str,
    first: u64,
) -> Result<Vec<Touch>> {
    let store = table.log_store();
    let newest = table.version().unwrap_or(0);
    let mut touches = Vec::new();
    for version in first..=newest {
        let Some(bytes) = store
            .read_commit_entry(version as _)
            .await
            .map_err(|e| Error::delta(name, e))?
        else {
            continue; // cleaned up with the log's retention
        };
        let mut touched = false;
        let mut committed_ms = None;
        for line in bytes.split(|b| *b == b'\n') {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(info) = action.get("commitInfo") {
                committed_ms = info.get("timestamp").and_then(|t| t.as_i64());
            }
            for kind in ["add", "remove"] {
                let Some(file) = action.get(kind) else {
                    continue;
                };
                touched |= match file.get("partitionValues") {
                    Some(values) => values.get(date_column).and_then(|v| v.as_str()) == Some(day),
                    // A remove without partition values could be anywhere: read the version.
                    None => true,
                };
            }
        }
        if touched {
            touches.push(Touch {
                version,
                committed_ms,
            });
        }
    }
    Ok(touches)
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL that totals the day per cell at one registered version.
fn totals_at(
    alias: &str,
    version: u64,
    layout: &SliceLayout,
    columns: &[String],
    request: &AuditRequest,
) -> String {
    let has = |c: &str| columns.iter().any(|x| x == c);
    let text_or_null = |c: &str| {
        if has(c) {
            format!("CAST({} AS VARCHAR)", quote_ident(c))
        } else {
            "CAST(NULL AS VARCHAR)".to_string()
        }
    };
    let mut select = vec![
        format!("CAST({version} AS BIGINT UNSIGNED) AS version"),
        format!("CAST({} AS VARCHAR) AS source", quote_ident(&layout.source)),
        format!(
            "CAST({} AS VARCHAR) AS account_id",
            quote_ident(&layout.account)
        ),
        format!(
            "coalesce({}, '') AS campaign_key",
            text_or_null("campaign_id")
        ),
        format!("max({}) AS campaign_name", text_or_null("campaign_name")),
    ];
    for (metric, sql_type) in METRICS {
        select.push(if has(metric) {
            format!(
                "CAST(sum({}) AS {sql_type}) AS {metric}",
                quote_ident(metric)
            )
        } else {
            format!("CAST(NULL AS {sql_type}) AS {metric}")
        });
    }
    let mut filters = vec![format!(
        "{} = DATE {}",
        quote_ident(&layout.date),
        quote_literal(&request.day.to_string())
    )];
    if let Some(source) = &request.source {
        filters.push(format!(
            "{} = {}",
            quote_ident(&layout.source),
            quote_literal(source)
        ));
    }
    if let Some(account) = &request.account {
        filters.push(format!(
            "{} = {}",
            quote_ident(&layout.account),
            quote_literal(account)
        ));
    }
    format!(
        "SELECT {} FROM {alias} WHERE {} GROUP BY 2, 3, 4",
        select.join(", "),
        filters.join(" AND ")
    )
}

/// The audit query over the per-version totals in `states` and the versions in `touched`.
fn audit_sql(states: &str) -> String {
    let metric_list = |f: &dyn Fn(&str) -> String| {
        METRICS
            .iter()
            .map(|(m, _)| f(m))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A cell absent at a version counts as 0 there (it was removed).
    let zeros =
        metric_list(&|m| format!("CASE WHEN s.version IS NULL THEN 0 ELSE s.{m} END AS {m}"));
    let deltas = metric_list(&|m| format!("{m} - lag({m}) OVER w AS {m}_delta"));
    let changed = METRICS
        .iter()
        .map(|(m, _)| format!("{m}_delta <> 0"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let out = metric_list(&|m| format!("{m}, {m}_delta"));
    format!(
        "WITH s AS ({states}),
         k AS (SELECT source, account_id, campaign_key, min(version) AS first_version,
                      max(campaign_name) AS campaign_name
               FROM s GROUP BY source, account_id, campaign_key),
         g AS (SELECT k.source, k.account_id, k.campaign_key, k.campaign_name, t.version
               FROM k JOIN touched t ON t.version >= k.first_version),
         j AS (SELECT g.version, g.source, g.account_id, g.campaign_key, g.campaign_name,
                      s.version IS NOT NULL AS present, {zeros}
               FROM g LEFT JOIN s ON s.version = g.version AND s.source = g.source
                    AND s.account_id = g.account_id AND s.campaign_key = g.campaign_key),
         d AS (SELECT j.*, lag(present) OVER w AS was_present, {deltas}
               FROM j WINDOW w AS (PARTITION BY source, account_id, campaign_key ORDER BY version))
         SELECT d.version, t.changed_at,
                CASE WHEN was_present IS NULL THEN 'first report'
                     WHEN NOT present THEN 'removed'
                     WHEN NOT was_present THEN 'reported again'
                     ELSE 'restated' END AS change,
                d.source, d.account_id, nullif(d.campaign_key, '') AS campaign_id,
                d.campaign_name, {out}
         FROM d JOIN touched t ON t.version = d.version
         WHERE was_present IS NULL OR present <> was_present OR {changed}
         ORDER BY d.version, d.source, d.account_id, d.campaign_key"
    )
}

/// The restatement audit of one day of a table: one row per cell that a version changed.
pub async fn restatements(
    warehouse: &Warehouse,
    request: &AuditRequest,
) -> Result<Vec<RecordBatch>> {
    let name = request.table.as_str();
    let namespace = warehouse.locate(name).await?;
    if namespace == Namespace::System {
        return Err(Error::NotSliceTable {
            table: name.to_string(),
            reason: "system tables have no restatements to audit".into(),
        });
    }
    let table = warehouse.open_table(namespace, name).await?;
    let layout = crate::replace::table_layout(name, &table)?;
    let floor = crate::maintenance::oldest_readable_version(warehouse, namespace, name)
        .await?
        .unwrap_or(0);
    let day = request.day.to_string();
    let touches = versions_touching(&table, name, &layout.date, &day, floor).await?;
    let ctx = SessionContext::new();
    let mut states = Vec::new();
    let mut columns_at: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for touch in &touches {
        let alias = format!("v{}", touch.version);
        register_version(&ctx, warehouse, namespace, name, touch.version, &alias).await?;
        let columns: Vec<String> = ctx
            .table_provider(alias.as_str())
            .await?
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        columns_at.insert(touch.version, columns);
    }
    for touch in &touches {
        let alias = format!("v{}", touch.version);
        states.push(totals_at(
            &alias,
            touch.version,
            &layout,
            &columns_at[&touch.version],
            request,
        ));
    }
    let touched = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("version", DataType::UInt64, false),
            Field::new(
                "changed_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
        ])),
        vec![
            Arc::new(UInt64Array::from_iter_values(
                touches.iter().map(|t| t.version),
            )),
            Arc::new(
                TimestampMillisecondArray::from(
                    touches.iter().map(|t| t.committed_ms).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ],
    )?;
    ctx.register_batch("touched", touched)?;
    if states.is_empty() {
        return Ok(vec![RecordBatch::new_empty(schema())]);
    }
    let sql = audit_sql(&states.join(" UNION ALL "));
    let batches = ctx.sql(&sql).await?.collect().await?;
    // Fix the column types and names to the declared schema.
    let schema = schema();
    batches
        .into_iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

/// `restatements('table', 'day'[, 'source'[, 'account']])`: the audit as a table function.
/// Reading it needs the grant on the table it audits.
pub struct RestatementsFunction {
    pub warehouse: Warehouse,
    pub readable: Option<crate::session::ReadFilter>,
}

impl std::fmt::Debug for RestatementsFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestatementsFunction").finish()
    }
}

const USAGE: &str =
    "restatements('table', date => '2026-11-01'[, source => 'meta'][, account => '1001'])";

/// A literal argument as text (`None` for NULL or missing).
fn text_argument(args: &[Expr], index: usize) -> DfResult<Option<String>> {
    crate::maturity::function::literal_argument("restatements", USAGE, args, index)
}

impl TableFunctionImpl for RestatementsFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let Some(table) = text_argument(args, 0)? else {
            return plan_err!("restatements() needs a table: {USAGE}");
        };
        let Some(day) = text_argument(args, 1)? else {
            return plan_err!("restatements() needs a day: {USAGE}");
        };
        let day: NaiveDate = day.parse().map_err(|_| {
            DataFusionError::Plan(format!(
                "restatements(): '{day}' is not a date like 2026-11-01"
            ))
        })?;
        if self
            .readable
            .as_ref()
            .is_some_and(|readable| !readable(&table))
        {
            return Err(DataFusionError::External(Box::new(Error::NotReadable {
                name: table,
            })));
        }
        Ok(Arc::new(RestatementsTable {
            warehouse: ScanWarehouse::of(&self.warehouse),
            request: AuditRequest {
                table,
                day,
                source: text_argument(args, 2)?,
                account: text_argument(args, 3)?,
            },
        }))
    }
}

/// The audit of one day, computed when scanned.
#[derive(Debug)]
pub struct RestatementsTable {
    warehouse: ScanWarehouse,
    request: AuditRequest,
}

impl RestatementsTable {
    /// The audit of `request` in the warehouse at `warehouse_url`, opened with `storage` when
    /// first scanned.
    pub fn remote(
        warehouse_url: String,
        request: AuditRequest,
        storage: crate::StorageConfig,
    ) -> Self {
        RestatementsTable {
            warehouse: ScanWarehouse::remote(warehouse_url, storage),
            request,
        }
    }

    /// The warehouse's URL and what is audited: what a plan sent elsewhere carries.
    pub fn request(&self) -> (&str, &AuditRequest) {
        (self.warehouse.url(), &self.request)
    }
}

#[async_trait]
impl TableProvider for RestatementsTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = restatements(self.warehouse.get().await?, &self.request).await?;
        let exec: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[batches], schema(), projection.cloned())?;
        Ok(exec)
    }
}
