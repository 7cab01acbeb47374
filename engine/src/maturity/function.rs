//! The SQL face of maturity: `maturity(table, metric [, by] [, since])` returns the curve, and
//! `projected(table, metric [, by] [, since] [, curve])` the projected final value of each day
//! still in its source's window (or of every day from `since`). Both are computed when
//! scanned, from the table's [`History`]; reading them needs the grant on the table.
//!
//! Values come back as DOUBLE in the metric's units. Ratios of projections are ratios of sums
//! of projected parts: `sum(revenue.projected_value) / sum(spend.projected_value)`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::plan_err;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::TableType;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::Expr;
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use super::curve;
use super::{Grain, Group, History, SCALE};
use crate::error::Error;
use crate::session::ReadFilter;
use crate::warehouse::{ScanWarehouse, Warehouse};

/// Which of the two functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Curve,
    Projected,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Curve => "maturity",
            Kind::Projected => "projected",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Kind::Curve => {
                "maturity('table', 'metric'[, by => 'source'|'account'|'campaign'][, since => '2026-10-01'])"
            }
            Kind::Projected => {
                "projected('table', 'metric'[, by => 'source'|'account'|'campaign'][, since => '2026-10-01'][, curve => 'source'|'account'|'campaign'])"
            }
        }
    }
}

/// What one call asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaturityRequest {
    pub kind: Kind,
    pub table: String,
    pub metric: String,
    /// What each row is per.
    pub by: Grain,
    /// Only days from this one.
    pub since: Option<NaiveDate>,
    /// What the projections' curves are per (never finer than `by`).
    pub curve: Grain,
}

/// The columns `maturity(…)` returns.
pub fn curve_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("age_days", DataType::Int64, false),
        Field::new("median_fraction", DataType::Float64, true),
        Field::new("p10_fraction", DataType::Float64, true),
        Field::new("p90_fraction", DataType::Float64, true),
        Field::new("days_observed", DataType::Int64, false),
        Field::new("enough_days", DataType::Boolean, false),
    ]))
}

/// The columns `projected(…)` returns.
pub fn projected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("date", DataType::Date32, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("age_days", DataType::Int64, false),
        Field::new("current_value", DataType::Float64, false),
        Field::new("maturity", DataType::Float64, true),
        Field::new("projected_value", DataType::Float64, true),
        Field::new("projected_low", DataType::Float64, true),
        Field::new("projected_high", DataType::Float64, true),
        Field::new("settled", DataType::Boolean, false),
        Field::new("basis", DataType::Utf8, false),
    ]))
}

/// A literal argument of a table function as text (`None` for NULL or missing).
pub(crate) fn literal_argument(
    function: &str,
    usage: &str,
    args: &[Expr],
    index: usize,
) -> DfResult<Option<String>> {
    let Some(arg) = args.get(index) else {
        return Ok(None);
    };
    let value = match arg {
        Expr::Literal(value, _) => value.clone(),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Literal(value, _) => value.cast_to(cast.field.data_type())?,
            _ => return plan_err!("{function}() takes literal arguments: {usage}"),
        },
        _ => return plan_err!("{function}() takes literal arguments: {usage}"),
    };
    if value.is_null() {
        return Ok(None);
    }
    Ok(Some(match value {
        ScalarValue::Date32(Some(days)) => {
            Date32Type::to_naive_date_opt(days).map_or_else(|| days.to_string(), |d| d.to_string())
        }
        other => other.to_string(),
    }))
}

/// `maturity(…)` or `projected(…)` as a table function.
pub struct MaturityFunction {
    pub kind: Kind,
    pub warehouse: Warehouse,
    pub readable: Option<ReadFilter>,
}

impl std::fmt::Debug for MaturityFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaturityFunction")
            .field("kind", &self.kind)
            .finish()
    }
}

impl MaturityFunction {
    fn request(&self, args: &[Expr]) -> DfResult<MaturityRequest> {
        let (name, usage) = (self.kind.name(), self.kind.usage());
        let text = |i| literal_argument(name, usage, args, i);
        let grain = |i, what: &str| -> DfResult<Option<Grain>> {
            text(i)?
                .map(|g| {
                    Grain::parse(&g).ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "{name}(): {what} => '{g}' is not one of 'source', 'account', 'campaign': {usage}"
                        ))
                    })
                })
                .transpose()
        };
        let Some(table) = text(0)? else {
            return plan_err!("{name}() needs a table: {usage}");
        };
        let Some(metric) = text(1)? else {
            return plan_err!("{name}() needs a metric column: {usage}");
        };
        let by = grain(2, "by")?.unwrap_or(Grain::Source);
        let since = text(3)?
            .map(|d| {
                d.parse::<NaiveDate>().map_err(|_| {
                    DataFusionError::Plan(format!(
                        "{name}(): since => '{d}' is not a date like 2026-10-01"
                    ))
                })
            })
            .transpose()?;
        let curve = match self.kind {
            Kind::Curve if args.len() > 4 => {
                return plan_err!("{name}() takes at most 4 arguments: {usage}")
            }
            Kind::Curve => by,
            Kind::Projected if args.len() > 5 => {
                return plan_err!("{name}() takes at most 5 arguments: {usage}")
            }
            // A curve per source learns from every account's days; finer ones from fewer.
            Kind::Projected => grain(4, "curve")?.unwrap_or(Grain::Source).min(by),
        };
        Ok(MaturityRequest {
            kind: self.kind,
            table,
            metric,
            by,
            since,
            curve,
        })
    }
}

impl TableFunctionImpl for MaturityFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let request = self.request(args)?;
        if self
            .readable
            .as_ref()
            .is_some_and(|readable| !readable(&request.table))
        {
            return Err(DataFusionError::External(Box::new(Error::NotReadable {
                name: request.table,
            })));
        }
        Ok(Arc::new(MaturityTable {
            warehouse: ScanWarehouse::of(&self.warehouse),
            request,
        }))
    }
}

/// A curve or projections, computed when scanned.
#[derive(Debug)]
pub struct MaturityTable {
    warehouse: ScanWarehouse,
    request: MaturityRequest,
}

impl MaturityTable {
    /// `request` on the warehouse at `warehouse_url`, opened with `storage` when first scanned.
    pub fn remote(
        warehouse_url: String,
        request: MaturityRequest,
        storage: crate::StorageConfig,
    ) -> Self {
        MaturityTable {
            warehouse: ScanWarehouse::remote(warehouse_url, storage),
            request,
        }
    }

    /// The warehouse's URL and the request: what a plan sent elsewhere carries.
    pub fn request(&self) -> (&str, &MaturityRequest) {
        (self.warehouse.url(), &self.request)
    }
}

/// Check that `metric` is a numeric column of the history's table.
fn check_metric(history: &History, request: &MaturityRequest) -> DfResult<()> {
    let name = request.kind.name();
    if history.metrics.contains(&request.metric) {
        return Ok(());
    }
    let numeric = history.metrics.join(", ");
    match history.columns.iter().find(|(c, _)| *c == request.metric) {
        Some((column, data_type)) => plan_err!(
            "{name}(): column '{column}' of {} is {data_type}, not a number; a curve follows a numeric column ({numeric})",
            request.table
        ),
        None => plan_err!(
            "{name}(): {} has no column '{}'; its numeric columns are {numeric}",
            request.table,
            request.metric
        ),
    }
}

fn text_column(values: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn group_columns<'a>(groups: impl Iterator<Item = &'a Group> + Clone) -> [ArrayRef; 3] {
    [
        text_column(groups.clone().map(|g| Some(g.source.clone()))),
        text_column(groups.clone().map(|g| g.account.clone())),
        text_column(groups.map(|g| g.campaign.clone())),
    ]
}

/// Compute the rows of `request` from the warehouse's history of its table.
pub async fn compute(warehouse: &Warehouse, request: &MaturityRequest) -> DfResult<RecordBatch> {
    let history = History::read(warehouse, &request.table)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    check_metric(&history, request)?;
    let (all, clocks) = history
        .series(&request.metric, request.by)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let series: Vec<_> = all
        .iter()
        .filter(|day| request.since.is_none_or(|since| day.day >= since))
        .cloned()
        .collect();
    let metric = |n: usize| text_column((0..n).map(|_| Some(request.metric.clone())));
    let real = |v: f64| v / SCALE;
    match request.kind {
        Kind::Curve => {
            let points = curve::curves(&series, &clocks);
            let [source, account, campaign] = group_columns(points.iter().map(|p| &p.group));
            let fraction = |f: fn(&curve::CurvePoint) -> Option<f64>| -> ArrayRef {
                Arc::new(points.iter().map(f).collect::<Float64Array>())
            };
            Ok(RecordBatch::try_new(
                curve_schema(),
                vec![
                    source,
                    account,
                    campaign,
                    metric(points.len()),
                    Arc::new(points.iter().map(|p| p.age_days).collect::<Int64Array>()),
                    fraction(|p| p.median_fraction),
                    fraction(|p| p.p10_fraction),
                    fraction(|p| p.p90_fraction),
                    Arc::new(
                        points
                            .iter()
                            .map(|p| p.days_observed as i64)
                            .collect::<Int64Array>(),
                    ),
                    Arc::new(
                        points
                            .iter()
                            .map(|p| Some(p.enough_days()))
                            .collect::<BooleanArray>(),
                    ),
                ],
            )?)
        }
        Kind::Projected => {
            // Curves learn from every settled day of the history (`since` picks the rows),
            // pooling the rows' fractions per curve group.
            let in_window: Vec<_> = series
                .into_iter()
                .filter(|day| {
                    request.since.is_some()
                        || clocks.get(&day.group.source).is_some_and(|clock| {
                            (clock.latest - day.day).num_days() <= clock.window
                        })
                })
                .collect();
            let curve_grain = request.curve;
            let rows = curve::project(&in_window, &all, &clocks, &|g: &Group| curve_grain.of(g));
            let [source, account, campaign] = group_columns(rows.iter().map(|p| &p.group));
            let value = |f: fn(&curve::Projection) -> Option<f64>| -> ArrayRef {
                Arc::new(
                    rows.iter()
                        .map(|p| f(p).map(real))
                        .collect::<Float64Array>(),
                )
            };
            Ok(RecordBatch::try_new(
                projected_schema(),
                vec![
                    source,
                    account,
                    campaign,
                    Arc::new(
                        rows.iter()
                            .map(|p| Some(Date32Type::from_naive_date(p.day)))
                            .collect::<Date32Array>(),
                    ),
                    metric(rows.len()),
                    Arc::new(rows.iter().map(|p| p.age_days).collect::<Int64Array>()),
                    Arc::new(
                        rows.iter()
                            .map(|p| real(p.current as f64))
                            .collect::<Float64Array>(),
                    ),
                    Arc::new(rows.iter().map(|p| p.maturity).collect::<Float64Array>()),
                    value(|p| p.projected),
                    value(|p| p.low),
                    value(|p| p.high),
                    Arc::new(
                        rows.iter()
                            .map(|p| Some(p.settled))
                            .collect::<BooleanArray>(),
                    ),
                    text_column(rows.iter().map(|p| Some(p.basis.as_str().to_string()))),
                ],
            )?)
        }
    }
}

#[async_trait]
impl TableProvider for MaturityTable {
    fn schema(&self) -> SchemaRef {
        match self.request.kind {
            Kind::Curve => curve_schema(),
            Kind::Projected => projected_schema(),
        }
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
        let batch = compute(self.warehouse.get().await?, &self.request).await?;
        let exec: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?;
        Ok(exec)
    }
}
