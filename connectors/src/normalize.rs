//! Turning platform JSON into Arrow, tolerant of schema drift.
//!
//! - Keys are normalized to snake_case whatever case the platform used (`costMicros`,
//!   `CostMicros`, `COST_MICROS` → `cost_micros`) and nested objects are flattened with `_`
//!   (`metrics.costMicros` → `metrics_cost_micros`); renamed fields are mapped back through
//!   per-source aliases.
//! - Each source declares its known columns with types; values arrive as strings or numbers
//!   and are parsed exactly (money as decimals, never through floats). Fields nobody declared
//!   (a platform added one) become nullable text columns.
//! - A payload that cannot be read (a value that does not parse, a row without its date or
//!   id, a known field gone while an unknown one appeared) is refused with a reason that says
//!   what to do; the caller quarantines it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use engine::model::{ad_performance_schema, MONEY_PRECISION, MONEY_SCALE};
use serde_json::Value;

/// One row as a platform returned it: flattened, snake_case keys, aliases applied.
pub type Record = BTreeMap<String, Value>;

/// The snake_case form of a key in any common case style.
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut previous: Option<char> = None;
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            // A new word: after a lowercase letter (`costMicros`), or after a digit when a
            // lowercase letter follows (`video3Seconds`), but not `PURCHASE_7D`.
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit() && next_lower)
            {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c == ' ' || c == '.' {
            out.push('_');
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

/// Flatten a JSON object into a [`Record`]: nested objects join their keys with `_`; arrays
/// and scalars are kept as values. Aliases map a flattened key to its canonical name.
pub fn flatten(value: &Value, aliases: &BTreeMap<String, String>) -> Record {
    fn walk(prefix: &str, value: &Value, out: &mut Record) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = normalize_key(k);
                    let key = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}_{key}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut flat = Record::new();
    walk("", value, &mut flat);
    if aliases.is_empty() {
        return flat;
    }
    flat.into_iter()
        .map(|(k, v)| match aliases.get(&k) {
            Some(canonical) => (canonical.clone(), v),
            None => (k, v),
        })
        .collect()
}

/// How a declared column is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
    /// A decimal in currency units ("12.5"), stored as `Decimal128(20, 6)`.
    Decimal,
    /// `YYYY-MM-DD` or `YYYYMMDD`.
    Date,
    /// Arrays and objects kept as JSON text.
    Json,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text | Kind::Json => DataType::Utf8,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Decimal => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
            Kind::Date => DataType::Date32,
        }
    }
}

/// A declared column of a per-source table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

pub const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

/// What a per-source table looks like and what a payload must carry.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub table: &'static str,
    pub columns: &'static [Column],
    /// Every row must have these (the day and the ad id).
    pub row_keys: &'static [&'static str],
    /// Fields that appear in every healthy payload; one missing from every row while an
    /// unknown field is present is taken for a rename.
    pub expected: &'static [&'static str],
    /// Declared numeric fields that the platform omits when zero (proto3 JSON) read as 0.
    pub absent_is_zero: bool,
}

/// Where each row came from, for the `_…` columns of a per-source table.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub source: String,
    pub account: String,
    pub fetched_at: DateTime<Utc>,
    pub raw_ref: String,
}

/// The per-source table's slice columns.
pub fn source_layout() -> engine::SliceLayout {
    engine::SliceLayout {
        source: "_source".into(),
        account: "_account_id".into(),
        date: "_date".into(),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Read an integer that may arrive as a number or a numeric string.
pub fn int(record: &Record, key: &str) -> Result<Option<i64>, String> {
    match record.get(key).and_then(scalar_text) {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => t
            .parse::<i64>()
            .map(Some)
            .or_else(|_| match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(format!("{key} = {t:?} is not an integer")),
            }),
    }
}

/// Read a float that may arrive as a number or a numeric string.
pub fn float(record: &Record, key: &str) -> Result<Option<f64>, String> {
    match record.get(key).and_then(scalar_text) {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("{key} = {t:?} is not a number")),
    }
}

/// Read a decimal amount ("12.5", 12.5) as an integer count of 10^-6 units.
pub fn decimal(record: &Record, key: &str) -> Result<Option<i128>, String> {
    match record.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let scaled = (f * 1e6).round();
            if scaled.is_finite() && scaled.abs() < 1e20 {
                Ok(Some(scaled as i128))
            } else {
                Err(format!("{key} = {n} is out of range"))
            }
        }
        Some(v) => {
            let t = scalar_text(v).unwrap_or_default();
            if t.is_empty() {
                return Ok(None);
            }
            parse_scaled(&t, MONEY_SCALE as u32)
                .map(Some)
                .ok_or_else(|| format!("{key} = {t:?} is not a decimal amount"))
        }
    }
}

/// Read a day as `YYYY-MM-DD` or `YYYYMMDD`, or the day of a `YYYY-MM-DD HH:MM:SS` time
/// (AppsFlyer's raw event times, in the report's time zone).
pub fn date(record: &Record, key: &str) -> Result<Option<NaiveDate>, String> {
    match record.get(key).and_then(scalar_text) {
        None => Ok(None),
        Some(t) => NaiveDate::parse_from_str(&t, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(&t, "%Y%m%d"))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S").map(|t| t.date())
            })
            .map(Some)
            .map_err(|_| format!("{key} = {t:?} is not a date")),
    }
}

/// Read text; numbers become their decimal text, arrays and objects JSON.
pub fn text(record: &Record, key: &str) -> Option<String> {
    record.get(key).and_then(scalar_text)
}

/// A decimal string ("12.5", "3", "-0.000001") as an integer scaled by 10^scale, exactly.
pub fn parse_scaled(text: &str, scale: u32) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > scale as usize
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i128>().ok()? * 10i128.pow(scale - fraction.len() as u32)
    };
    let value = whole.checked_mul(10i128.pow(scale))?.checked_add(frac)?;
    Some(if negative { -value } else { value })
}

/// A count of 10^-6 units as a decimal string without trailing zeros ("12.5").
pub fn format_micros(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let whole = abs / 1_000_000;
    let frac = abs % 1_000_000;
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:06}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

/// Check what every payload must satisfy before it is loaded: each row has its keys, and no
/// expected field vanished while an unknown one appeared (a rename nobody mapped).
pub fn check_payload(spec: &TableSpec, records: &[Record], alias_hint: &str) -> Result<(), String> {
    for (i, record) in records.iter().enumerate() {
        for key in spec.row_keys {
            if record.get(*key).is_none_or(Value::is_null) {
                return Err(format!("row {i} has no {key}"));
            }
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let declared: BTreeSet<&str> = spec.columns.iter().map(|c| c.name).collect();
    let unknown: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.keys())
        .map(String::as_str)
        .filter(|k| !declared.contains(k))
        .collect();
    for expected in spec.expected {
        if records.iter().all(|r| !r.contains_key(*expected)) && !unknown.is_empty() {
            let family = expected.split('_').next().unwrap_or_default();
            let suspects: Vec<&str> = unknown
                .iter()
                .copied()
                .filter(|u| !expected.contains('_') || u.starts_with(family))
                .collect();
            if !suspects.is_empty() {
                return Err(format!(
                    "field {expected} is missing from every row while {} appeared; if the \
                     platform renamed it, map it in {alias_hint}, e.g. {} = \"{expected}\"",
                    suspects.join(", "),
                    suspects[0]
                ));
            }
        }
    }
    Ok(())
}

/// Build the per-source table's rows: `_source, _account_id, _date` first, then the declared
/// columns typed, then fields nobody declared as text (sorted), then `_fetched_at, _raw_ref`.
pub fn source_batch(
    spec: &TableSpec,
    date_key: &str,
    records: &[(Record, Provenance)],
) -> Result<RecordBatch, String> {
    let declared: BTreeSet<&str> = spec.columns.iter().map(|c| c.name).collect();
    let extras: BTreeSet<&str> = records
        .iter()
        .flat_map(|(r, _)| r.keys())
        .map(String::as_str)
        .filter(|k| !declared.contains(k) && !k.starts_with('_'))
        .collect();
    let mut fields = vec![
        Field::new("_source", DataType::Utf8, false),
        Field::new("_account_id", DataType::Utf8, false),
        Field::new("_date", DataType::Date32, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|(_, p)| p.source.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|(_, p)| p.account.as_str()),
        )),
    ];
    let days = records
        .iter()
        .enumerate()
        .map(|(i, (r, _))| {
            date(r, date_key)
                .map_err(|e| format!("row {i}: {e}"))?
                .map(Date32Type::from_naive_date)
                .ok_or_else(|| format!("row {i} has no {date_key}"))
        })
        .collect::<Result<Vec<i32>, String>>()?;
    columns.push(Arc::new(Date32Array::from(days)));
    let zero_default =
        |kind: Kind| spec.absent_is_zero && matches!(kind, Kind::Int | Kind::Float | Kind::Decimal);
    for column in spec.columns {
        let name = column.name;
        let row_err = |i: usize, e: String| format!("row {i}: {e}");
        let array: ArrayRef = match column.kind {
            Kind::Text | Kind::Json => Arc::new(StringArray::from(
                records
                    .iter()
                    .map(|(r, _)| text(r, name))
                    .collect::<Vec<_>>(),
            )),
            Kind::Int => Arc::new(Int64Array::from(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, (r, _))| {
                        int(r, name)
                            .map(|v| v.or(zero_default(column.kind).then_some(0)))
                            .map_err(|e| row_err(i, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            Kind::Float => Arc::new(Float64Array::from(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, (r, _))| {
                        float(r, name)
                            .map(|v| v.or(zero_default(column.kind).then_some(0.0)))
                            .map_err(|e| row_err(i, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )),
            Kind::Decimal => Arc::new(
                Decimal128Array::from(
                    records
                        .iter()
                        .enumerate()
                        .map(|(i, (r, _))| {
                            decimal(r, name)
                                .map(|v| v.or(zero_default(column.kind).then_some(0)))
                                .map_err(|e| row_err(i, e))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                )
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .map_err(|e| e.to_string())?,
            ),
            Kind::Date => Arc::new(Date32Array::from(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, (r, _))| {
                        date(r, name)
                            .map(|d| d.map(Date32Type::from_naive_date))
                            .map_err(|e| row_err(i, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )),
        };
        fields.push(Field::new(name, column.kind.data_type(), true));
        columns.push(array);
    }
    for extra in &extras {
        fields.push(Field::new(*extra, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            records
                .iter()
                .map(|(r, _)| text(r, extra))
                .collect::<Vec<_>>(),
        )));
    }
    fields.push(Field::new(
        "_fetched_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from_iter_values(
            records.iter().map(|(_, p)| p.fetched_at.timestamp_micros()),
        )
        .with_timezone("UTC"),
    ));
    fields.push(Field::new("_raw_ref", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(
        records.iter().map(|(_, p)| p.raw_ref.as_str()),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// One `ad_performance` row, before it becomes Arrow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdRow {
    pub account_id: String,
    pub date: Option<NaiveDate>,
    pub account_name: Option<String>,
    pub campaign_id: Option<String>,
    pub campaign_name: Option<String>,
    pub ad_group_id: Option<String>,
    pub ad_group_name: Option<String>,
    pub ad_id: Option<String>,
    pub ad_name: Option<String>,
    pub currency: Option<String>,
    pub impressions: Option<i64>,
    pub clicks: Option<i64>,
    /// In 10^-6 currency units.
    pub spend: Option<i128>,
    pub conversions: Option<f64>,
    pub installs: Option<i64>,
    /// In 10^-6 currency units.
    pub revenue: Option<i128>,
}

/// `ad_performance` rows of one source as a batch.
pub fn ad_performance_batch(source: &str, rows: &[AdRow]) -> Result<RecordBatch, String> {
    let strings = |f: fn(&AdRow) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let money = |f: fn(&AdRow) -> Option<i128>| -> Result<ArrayRef, String> {
        Ok(Arc::new(
            Decimal128Array::from(rows.iter().map(f).collect::<Vec<_>>())
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .map_err(|e| e.to_string())?,
        ))
    };
    let dates = rows
        .iter()
        .map(|r| {
            r.date
                .map(Date32Type::from_naive_date)
                .ok_or("row without a date")
        })
        .collect::<Result<Vec<i32>, _>>()?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![source; rows.len()])),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.account_id.as_str()),
        )),
        Arc::new(Date32Array::from(dates)),
        strings(|r| r.account_name.as_deref()),
        strings(|r| r.campaign_id.as_deref()),
        strings(|r| r.campaign_name.as_deref()),
        strings(|r| r.ad_group_id.as_deref()),
        strings(|r| r.ad_group_name.as_deref()),
        strings(|r| r.ad_id.as_deref()),
        strings(|r| r.ad_name.as_deref()),
        strings(|r| r.currency.as_deref()),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.impressions).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.clicks).collect::<Vec<_>>(),
        )),
        money(|r| r.spend)?,
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.conversions).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.installs).collect::<Vec<_>>(),
        )),
        money(|r| r.revenue)?,
    ];
    RecordBatch::try_new(ad_performance_schema(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_normalize_from_any_case() {
        for k in ["costMicros", "CostMicros", "COST_MICROS", "cost_micros"] {
            assert_eq!(normalize_key(k), "cost_micros", "{k}");
        }
        assert_eq!(normalize_key("AdGroupAd"), "ad_group_ad");
        assert_eq!(normalize_key("DATE_START"), "date_start");
        assert_eq!(normalize_key("video_p100"), "video_p100");
        assert_eq!(normalize_key("PIXEL_PURCHASE_7D"), "pixel_purchase_7d");
        assert_eq!(normalize_key("video3Seconds"), "video3_seconds");
    }

    #[test]
    fn nested_objects_flatten_and_aliases_apply() {
        let v =
            json!({"metrics": {"costMicros": "5"}, "adGroupAd": {"ad": {"id": "9"}}, "Spent": "1"});
        let aliases = BTreeMap::from([("spent".to_string(), "spend".to_string())]);
        let r = flatten(&v, &aliases);
        assert_eq!(r["metrics_cost_micros"], json!("5"));
        assert_eq!(r["ad_group_ad_ad_id"], json!("9"));
        assert_eq!(r["spend"], json!("1"));
    }

    #[test]
    fn numbers_parse_exactly_from_strings_and_numbers() {
        let r: Record = flatten(
            &json!({"a": "12", "b": 12, "c": "12.5", "d": 0.1, "e": "x", "f": "", "g": "20250101"}),
            &BTreeMap::new(),
        );
        assert_eq!(int(&r, "a").unwrap(), Some(12));
        assert_eq!(int(&r, "b").unwrap(), Some(12));
        assert_eq!(decimal(&r, "c").unwrap(), Some(12_500_000));
        assert_eq!(decimal(&r, "d").unwrap(), Some(100_000));
        assert!(int(&r, "e").unwrap_err().contains("\"x\""));
        assert_eq!(int(&r, "f").unwrap(), None);
        assert_eq!(int(&r, "missing").unwrap(), None);
        assert_eq!(date(&r, "g").unwrap(), "2025-01-01".parse().ok());
        assert_eq!(parse_scaled("1.0000001", 6), None);
        assert_eq!(parse_scaled("1e5", 6), None);
        assert_eq!(parse_scaled("-0.000001", 6), Some(-1));
        assert_eq!(format_micros(12_500_000), "12.5");
        assert_eq!(format_micros(3_000_000), "3");
        assert_eq!(format_micros(-1), "-0.000001");
    }

    const SPEC: TableSpec = TableSpec {
        table: "t",
        columns: &[
            col("date", Kind::Date),
            col("ad_id", Kind::Text),
            col("spend", Kind::Decimal),
        ],
        row_keys: &["date", "ad_id"],
        expected: &["spend"],
        absent_is_zero: false,
    };

    #[test]
    fn an_unmapped_rename_is_refused_with_a_hint() {
        let rows = vec![flatten(
            &json!({"date": "2026-01-01", "ad_id": "1", "amount_spent": "3"}),
            &BTreeMap::new(),
        )];
        let e = check_payload(&SPEC, &rows, "[sources.meta.aliases]").unwrap_err();
        assert!(e.contains("amount_spent = \"spend\""), "{e}");
        let added = vec![flatten(
            &json!({"date": "2026-01-01", "ad_id": "1", "spend": "3", "new_metric": "3"}),
            &BTreeMap::new(),
        )];
        assert!(check_payload(&SPEC, &added, "").is_ok());
        let keyless = vec![flatten(&json!({"date": "2026-01-01"}), &BTreeMap::new())];
        assert!(check_payload(&SPEC, &keyless, "")
            .unwrap_err()
            .contains("ad_id"));
    }

    #[test]
    fn unknown_fields_become_text_columns() {
        let p = Provenance {
            source: "s".into(),
            account: "a".into(),
            fetched_at: Utc::now(),
            raw_ref: "raw/x".into(),
        };
        let r = flatten(
            &json!({"date": "2026-01-01", "ad_id": "1", "spend": "3.5", "quality": {"rank": "HIGH"}}),
            &BTreeMap::new(),
        );
        let batch = source_batch(&SPEC, "date", &[(r, p)]).unwrap();
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "_source",
                "_account_id",
                "_date",
                "date",
                "ad_id",
                "spend",
                "quality_rank",
                "_fetched_at",
                "_raw_ref"
            ]
        );
    }
}
