//! What the endpoint says about itself and the warehouse: SqlInfo (server name, SQL
//! keywords and functions, identifier quoting; JDBC clients fail without them), the XDBC
//! types, and the catalog listing (`tidemark.public` for tables and marts, `tidemark.tidemark`
//! for system tables), filtered to what the caller may read.

use std::sync::OnceLock;

use arrow::array::RecordBatch;
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
    XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, XdbcDataType,
};
use engine::session::{CATALOG, SCHEMA, SYSTEM_SCHEMA};
use engine::{Namespace, WarehouseSession};

/// Table types as JDBC knows them.
pub const TABLE_TYPES: [&str; 2] = ["TABLE", "SYSTEM TABLE"];

/// The server's SqlInfo answers.
pub fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "tidemark");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
        b.append(SqlInfo::FlightSqlServerCancel, true);
        b.append(SqlInfo::FlightSqlServerStatementTimeout, 0_i32);
        b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0_i32);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
        );
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(
            SqlInfo::SqlQuotedIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
        );
        b.append(SqlInfo::SqlAllTablesAreSelectable, true);
        b.append(
            SqlInfo::SqlNullOrdering,
            SqlNullOrdering::SqlNullsSortedHigh as i32,
        );
        b.append(
            SqlInfo::SqlKeywords,
            &[
                "DESCRIBE",
                "HISTORY",
                "PARTITIONS",
                "REFRESH",
                "MART",
                "OPTIMIZE",
                "VACUUM",
                "RETAIN",
                "VERSION",
                "TIMESTAMP",
                "OF",
            ][..],
        );
        b.append(
            SqlInfo::SqlNumericFunctions,
            &[
                "abs", "ceil", "floor", "round", "power", "sqrt", "ln", "log10", "exp",
            ][..],
        );
        b.append(
            SqlInfo::SqlStringFunctions,
            &[
                "concat",
                "lower",
                "upper",
                "length",
                "substr",
                "trim",
                "replace",
                "split_part",
            ][..],
        );
        b.append(
            SqlInfo::SqlSystemFunctions,
            &["ctr", "cpc", "cpi", "cpa", "roas", "ratio"][..],
        );
        b.append(
            SqlInfo::SqlDatetimeFunctions,
            &[
                "now",
                "current_date",
                "date_trunc",
                "date_part",
                "to_date",
                "to_timestamp",
            ][..],
        );
        b.append(SqlInfo::SqlSearchStringEscape, "\\");
        b.append(SqlInfo::SqlExtraNameCharacters, "");
        b.append(SqlInfo::SqlSupportsColumnAliasing, true);
        b.append(SqlInfo::SqlNullPlusNullIsNull, true);
        b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
        b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
        b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
        b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
        b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
        b.append(SqlInfo::SqlMaxColumnNameLength, 255_i64);
        b.append(SqlInfo::SqlMaxTableNameLength, 255_i64);
        b.append(SqlInfo::SqlSchemaTerm, "schema");
        b.append(SqlInfo::SqlCatalogTerm, "catalog");
        b.append(SqlInfo::SqlCatalogAtStart, true);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.build().expect("static SqlInfo builds")
    })
}

fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    size: Option<i32>,
    literal: Option<&str>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: size,
        literal_prefix: literal.map(Into::into),
        literal_suffix: literal.map(Into::into),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: literal.is_some(),
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: size.map(|_| 10),
        interval_precision: None,
    }
}

/// The SQL types results come in.
pub fn xdbc_types() -> &'static XdbcTypeInfoData {
    static TYPES: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mut b = XdbcTypeInfoDataBuilder::new();
        b.append(xdbc("BIGINT", XdbcDataType::XdbcBigint, Some(19), None));
        b.append(xdbc("INTEGER", XdbcDataType::XdbcInteger, Some(10), None));
        b.append(xdbc("DOUBLE", XdbcDataType::XdbcDouble, Some(15), None));
        b.append(xdbc("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), None));
        b.append(xdbc("BOOLEAN", XdbcDataType::XdbcBit, None, None));
        b.append(xdbc("VARCHAR", XdbcDataType::XdbcVarchar, None, Some("'")));
        b.append(xdbc("DATE", XdbcDataType::XdbcDate, None, Some("'")));
        b.append(xdbc(
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            None,
            Some("'"),
        ));
        b.build().expect("static XDBC types build")
    })
}

/// `GetCatalogs`: the one catalog.
pub fn catalogs() -> Result<RecordBatch, arrow_flight::error::FlightError> {
    let mut b = GetCatalogsBuilder::new();
    b.append(CATALOG);
    b.build()
}

/// `GetDbSchemas`: `public` (tables and marts) and `tidemark` (system tables).
pub fn db_schemas(
    query: CommandGetDbSchemas,
) -> Result<RecordBatch, arrow_flight::error::FlightError> {
    let mut b: GetDbSchemasBuilder = query.into_builder();
    b.append(CATALOG, SCHEMA);
    b.append(CATALOG, SYSTEM_SCHEMA);
    b.build()
}

/// `GetTables`: what `session` may read, with Arrow schemas when asked.
pub async fn tables(
    session: &WarehouseSession,
    query: CommandGetTables,
) -> Result<RecordBatch, String> {
    let include_schema = query.include_schema;
    let mut b: GetTablesBuilder = query.into_builder();
    session.refresh().await.map_err(|e| e.to_string())?;
    for (name, namespace) in session.names() {
        let (schema_name, table_name, table_type) = match namespace {
            Namespace::System => (
                SYSTEM_SCHEMA,
                name.trim_start_matches("tidemark.").to_string(),
                "SYSTEM TABLE",
            ),
            _ => (SCHEMA, name.clone(), "TABLE"),
        };
        let schema = if include_schema {
            let provider = session
                .context()
                .table_provider(format!("{CATALOG}.{schema_name}.{table_name}"))
                .await
                .map_err(|e| format!("cannot read the schema of '{name}': {e}"))?;
            super::results::portable_schema(&provider.schema())
        } else {
            std::sync::Arc::new(arrow::datatypes::Schema::empty())
        };
        b.append(CATALOG, schema_name, &table_name, table_type, &schema)
            .map_err(|e| e.to_string())?;
    }
    b.build().map_err(|e| e.to_string())
}
