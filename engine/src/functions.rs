//! Ratio metrics defined once, as ratios of sums, so they aggregate correctly at any grain:
//! `ctr(clicks, impressions)` is `sum(clicks) / sum(impressions)` over the rows of a group, not
//! an average of per-row ratios. Registered in every warehouse session and mart refresh.
//!
//! | function | meaning |
//! | --- | --- |
//! | `ratio(numerator, denominator)` | `sum(numerator) / sum(denominator)` |
//! | `ctr(clicks, impressions)` | click-through rate |
//! | `cpc(spend, clicks)` | cost per click |
//! | `cpi(spend, installs)` | cost per install |
//! | `cpa(spend, conversions)` | cost per acquisition |
//! | `roas(revenue, spend)` | return on ad spend |
//!
//! A group whose denominator sums to zero (or has only nulls) gets NULL, never infinity.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The ratio functions and the argument names their help shows.
const RATIOS: [(&str, &str); 6] = [
    ("ratio", "numerator, denominator"),
    ("ctr", "clicks, impressions"),
    ("cpc", "spend, clicks"),
    ("cpi", "spend, installs"),
    ("cpa", "spend, conversions"),
    ("roas", "revenue, spend"),
];

/// Register every ratio function in `ctx`.
pub fn register(ctx: &SessionContext) {
    for udaf in udafs() {
        ctx.register_udaf(udaf.as_ref().clone());
    }
}

/// Every ratio function (for sessions built without a context: a Ballista scheduler's and
/// executors').
pub fn udafs() -> Vec<Arc<AggregateUDF>> {
    RATIOS
        .iter()
        .map(|&(name, args)| Arc::new(AggregateUDF::from(RatioOfSums::new(name, args))))
        .collect()
}

/// `sum(a) / sum(b)` under a metric's name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RatioOfSums {
    name: &'static str,
    args: &'static str,
    signature: Signature,
}

impl RatioOfSums {
    fn new(name: &'static str, args: &'static str) -> Self {
        RatioOfSums {
            name,
            args,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for RatioOfSums {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "{}({}) takes 2 arguments, not {}",
                self.name,
                self.args,
                arg_types.len()
            );
        }
        for t in arg_types {
            if !(t.is_numeric() || t.is_null()) {
                return plan_err!("{}({}) takes numbers, not {t}", self.name, self.args);
            }
        }
        Ok(vec![DataType::Float64, DataType::Float64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<SumPair>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_numerator", args.name),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format!("{}_denominator", args.name),
                DataType::Float64,
                true,
            )),
        ])
    }
}

/// The two running sums.
#[derive(Debug, Default)]
struct SumPair {
    numerator: f64,
    denominator: f64,
}

fn sum_of(array: &ArrayRef) -> Result<f64> {
    let floats = cast(array, &DataType::Float64)?;
    Ok(floats.as_primitive::<Float64Type>().iter().flatten().sum())
}

impl Accumulator for SumPair {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        // Rows where either side is null do not count on either side.
        let both = arrow::compute::and(
            &arrow::compute::is_not_null(&values[0])?,
            &arrow::compute::is_not_null(&values[1])?,
        )?;
        let numerator = arrow::compute::filter(&values[0], &both)?;
        let denominator = arrow::compute::filter(&values[1], &both)?;
        self.numerator += sum_of(&numerator)?;
        self.denominator += sum_of(&denominator)?;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.numerator += sum_of(&states[0])?;
        self.denominator += sum_of(&states[1])?;
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(Some(self.numerator)),
            ScalarValue::Float64(Some(self.denominator)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(
            (self.denominator != 0.0).then(|| self.numerator / self.denominator),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array};

    #[tokio::test]
    async fn ratios_are_ratios_of_sums_at_any_grain() {
        let ctx = SessionContext::new();
        register(&ctx);
        ctx.sql(
            "CREATE TABLE t (channel VARCHAR, clicks BIGINT, impressions BIGINT, spend DECIMAL(18, 6)) AS VALUES \
             ('a', 1, 10, 5.0), ('a', 9, 10, 5.0), ('b', 0, 0, 1.0), ('b', NULL, 5, 1.0)",
        )
        .await
        .unwrap();
        let batches = ctx
            .sql("SELECT ctr(clicks, impressions) AS ctr, cpc(spend, clicks) AS cpc FROM t GROUP BY channel ORDER BY channel")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let column = |i: usize| {
            batches[0]
                .column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        // a: 10 clicks / 20 impressions (not the mean of 0.1 and 0.9 weighted wrong); b: 0/0.
        assert_eq!(column(0).value(0), 0.5);
        assert!(column(0).is_null(1));
        assert_eq!(column(1).value(0), 1.0);
        assert!(
            column(1).is_null(1),
            "b spent 1.0 on 0 clicks: no cost per click"
        );
    }
}
