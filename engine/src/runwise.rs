//! Scalar functions evaluated once per run of equal inputs instead of once per row.
//!
//! A tidemark table's `date` is a partition column: every row a file yields has the same day,
//! so `date_trunc('month', date)` over a batch of 8,192 rows computes the same month 8,192
//! times. DataFusion's `date_trunc` goes through a calendar conversion per row, which cost
//! ~85–160 ms per 20 M rows in the bench's month and week queries (a third of their time). The
//! wrapper here finds the runs of equal values in the argument (one vectorised comparison),
//! calls the wrapped function on one value per run and repeats each result over its run. The
//! answer is the wrapped function's own, value for value; when runs are short (no gain) the
//! wrapped function is called as is.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::take;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// The argument (by position) whose runs are found, per wrapped function.
const WRAPPED: [(&str, usize); 1] = [("date_trunc", 1)];

/// Replace the session's functions named in [`WRAPPED`] with run-wise versions of themselves.
pub fn register(ctx: &SessionContext) {
    for udf in udfs() {
        ctx.register_udf(udf.as_ref().clone());
    }
}

/// The run-wise versions of DataFusion's functions named in [`WRAPPED`], under their names
/// (for sessions built without a context: a Ballista scheduler's and executors').
pub fn udfs() -> Vec<Arc<ScalarUDF>> {
    let defaults = datafusion::functions::all_default_functions();
    WRAPPED
        .iter()
        .filter_map(|&(name, argument)| {
            let inner = defaults.iter().find(|f| f.name() == name)?.clone();
            Some(Arc::new(ScalarUDF::new_from_impl(Runwise {
                inner,
                argument,
            })))
        })
        .collect()
}

/// `inner`, evaluated once per run of equal values of argument `argument`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Runwise {
    inner: Arc<ScalarUDF>,
    argument: usize,
}

/// Runs shorter than this on average are not worth finding.
const MIN_AVERAGE_RUN: usize = 4;

impl Runwise {
    /// Where each run of equal values starts, or `None` when runs are too short to gain from.
    fn run_starts(values: &ArrayRef) -> Result<Option<Vec<u32>>> {
        let n = values.len();
        if n < 2 * MIN_AVERAGE_RUN {
            return Ok(None);
        }
        let changed = distinct(&values.slice(1, n - 1), &values.slice(0, n - 1))?;
        let runs = 1 + changed.true_count();
        if runs * MIN_AVERAGE_RUN > n {
            return Ok(None);
        }
        let mut starts = Vec::with_capacity(runs);
        starts.push(0);
        starts.extend(changed.values().set_indices().map(|i| i as u32 + 1));
        Ok(Some(starts))
    }
}

impl ScalarUDFImpl for Runwise {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = match args.args.get(self.argument) {
            Some(ColumnarValue::Array(values)) => Arc::clone(values),
            _ => return self.inner.invoke_with_args(args),
        };
        let others_scalar = args
            .args
            .iter()
            .enumerate()
            .all(|(i, a)| i == self.argument || matches!(a, ColumnarValue::Scalar(_)));
        let starts = match others_scalar {
            true => Self::run_starts(&values)?,
            false => None,
        };
        let Some(starts) = starts else {
            return self.inner.invoke_with_args(args);
        };
        let n = values.len();
        let firsts = take(&values, &UInt32Array::from(starts.clone()), None)?;
        let mut per_run = args;
        per_run.args[self.argument] = ColumnarValue::Array(firsts);
        per_run.number_rows = starts.len();
        let results = self
            .inner
            .invoke_with_args(per_run)?
            .into_array(starts.len())?;
        // Row i takes the result of the run it falls in.
        let mut run_of_row = Vec::with_capacity(n);
        for (run, start) in starts.iter().enumerate() {
            let end = starts.get(run + 1).map_or(n, |&s| s as usize);
            run_of_row.extend(std::iter::repeat_n(run as u32, end - *start as usize));
        }
        Ok(ColumnarValue::Array(take(
            &results,
            &UInt32Array::from(run_of_row),
            None,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;

    /// The same statement answered by DataFusion's function and by the run-wise wrapper.
    async fn both(sql: &str, batch: RecordBatch) -> (String, String) {
        let plain = SessionContext::new();
        plain.register_batch("t", batch.clone()).unwrap();
        let runwise = SessionContext::new();
        register(&runwise);
        runwise.register_batch("t", batch).unwrap();
        let answer = |ctx: SessionContext| async move {
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            pretty_format_batches(&batches).unwrap().to_string()
        };
        (answer(plain).await, answer(runwise).await)
    }

    fn dates(values: Vec<Option<i32>>) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Date32Array::from(values))]).unwrap()
    }

    #[tokio::test]
    async fn runs_of_days_truncate_as_datafusion_does() {
        // Runs of equal days with nulls among them, then a stretch of distinct days.
        let mut values = Vec::new();
        for day in [20_000, 20_000, 20_031, 20_060] {
            values.extend(std::iter::repeat_n(Some(day), 50));
            values.extend(std::iter::repeat_n(None, 3));
        }
        values.extend((20_100..20_140).map(Some));
        for unit in ["month", "week", "year", "day"] {
            let sql = format!("SELECT d, date_trunc('{unit}', d) AS t FROM t");
            let (plain, runwise) = both(&sql, dates(values.clone())).await;
            assert_eq!(plain, runwise, "{unit}");
        }
    }

    #[tokio::test]
    async fn short_runs_and_tiny_batches_are_passed_through() {
        let distinct_days: Vec<Option<i32>> = (20_000..20_100).map(Some).collect();
        let (plain, runwise) = both(
            "SELECT date_trunc('month', d) AS t FROM t",
            dates(distinct_days),
        )
        .await;
        assert_eq!(plain, runwise);
        let (plain, runwise) = both(
            "SELECT date_trunc('month', d) AS t FROM t",
            dates(vec![Some(20_000), Some(20_000)]),
        )
        .await;
        assert_eq!(plain, runwise);
        assert!(runwise.contains("2024-10-01T00:00:00"), "{runwise}");
    }

    #[test]
    fn run_starts_marks_each_change_including_nulls() {
        let values: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            None,
            None,
            None,
            None,
            Some(2),
            Some(2),
            Some(2),
            Some(2),
        ]));
        assert_eq!(Runwise::run_starts(&values).unwrap(), Some(vec![0, 4, 8]));
    }
}
