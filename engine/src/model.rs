//! The canonical model: the schema of `ad_performance`, the table every source feeds, one row
//! per (source, account, date, ad). Money is decimal in the account's currency; connectors
//! convert micros and numeric strings at the edge.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Name of the unified table.
pub const AD_PERFORMANCE: &str = "ad_performance";

/// Precision and scale of money columns: micros, up to 10^14 in any currency.
pub const MONEY_PRECISION: u8 = 20;
pub const MONEY_SCALE: i8 = 6;

/// The Arrow type of money columns.
pub fn money_type() -> DataType {
    DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE)
}

/// The schema of `ad_performance`; the slice columns (source, account_id, date) lead.
pub fn ad_performance_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("account_name", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("campaign_name", DataType::Utf8, true),
        Field::new("ad_group_id", DataType::Utf8, true),
        Field::new("ad_group_name", DataType::Utf8, true),
        Field::new("ad_id", DataType::Utf8, true),
        Field::new("ad_name", DataType::Utf8, true),
        Field::new("currency", DataType::Utf8, true),
        Field::new("impressions", DataType::Int64, true),
        Field::new("clicks", DataType::Int64, true),
        Field::new("spend", money_type(), true),
        Field::new("conversions", DataType::Float64, true),
        Field::new("installs", DataType::Int64, true),
        Field::new("revenue", money_type(), true),
    ]))
}
