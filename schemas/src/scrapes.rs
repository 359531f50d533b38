//! The `scrapes` table: every read of a server's metrics endpoint (`capture --scrape`), kept
//! as received. The exposition text is parsed by `analyze` (`server_metrics`), so a parser
//! fix or a new well-known series re-reads old runs, and a failed scrape is a row too.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// Table name, as written in segment metadata and used by `analyze sql`.
pub const TABLE: &str = "scrapes";

/// `utf8`, never null: the URL read (credentials removed, secrets redacted).
pub const TARGET: &str = "target";
/// `i64` nanoseconds since run start, never null: when the request was sent.
pub const T_NS: &str = "t_ns";
/// `i64` nanoseconds since run start, never null: when the body was read or the read failed.
pub const END_NS: &str = "end_ns";
/// `u16`: the HTTP status; null when no response came.
pub const HTTP_STATUS: &str = "http_status";
/// `utf8`: the response's `Content-Type` (Prometheus text or OpenMetrics); null if none.
pub const CONTENT_TYPE: &str = "content_type";
/// `utf8`: the response body as received (invalid UTF-8 replaced); null when none was read.
pub const BODY: &str = "body";
/// `utf8`: why the scrape failed (connect, timeout, a status other than 200, a body over the
/// limit); null for a good scrape.
pub const ERROR: &str = "error";

/// Column names in schema order.
pub const COLUMNS: [&str; 7] = [TARGET, T_NS, END_NS, HTTP_STATUS, CONTENT_TYPE, BODY, ERROR];

/// The Arrow schema of the `scrapes` table.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(TARGET, DataType::Utf8, false),
                Field::new(T_NS, DataType::Int64, false),
                Field::new(END_NS, DataType::Int64, false),
                Field::new(HTTP_STATUS, DataType::UInt16, true),
                Field::new(CONTENT_TYPE, DataType::Utf8, true),
                Field::new(BODY, DataType::Utf8, true),
                Field::new(ERROR, DataType::Utf8, true),
            ]))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_schema_order() {
        let s = schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, COLUMNS);
    }
}
