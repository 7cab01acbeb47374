//! What a Flight ticket carries: the statement (or the prepared statement whose bound
//! parameters to use), the caller it was issued to, and which part of a split result to
//! fetch. Tickets are JSON inside `TicketStatementQuery`, so any DoGet can re-plan the
//! statement without server-side state beyond prepared parameters and cached small results.

use serde::{Deserialize, Serialize};

/// One part of a result split by day: rows whose `column` lies in `[from, to)` (an end left
/// out is open), or the rows where it is NULL. The parts of a result cover every row once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    Range {
        column: String,
        from: Option<String>,
        to: Option<String>,
    },
    Nulls {
        column: String,
    },
}

/// The body of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketBody {
    /// Identifies the query for cancellation (shared by the parts of one result).
    pub query_id: String,
    /// Who the ticket was issued to: a DoGet by anyone else is refused.
    pub user: String,
    pub source: Source,
    pub part: Option<Part>,
}

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// Plan and run this statement.
    Statement(String),
    /// Run a prepared statement with its bound parameters.
    Prepared(String),
    /// Rows computed when the FlightInfo was asked for (tidemark statements), kept briefly.
    Cached(String),
}

impl TicketBody {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("tickets serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a ticket of this server: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip() {
        let body = TicketBody {
            query_id: "q1".into(),
            user: "ana".into(),
            source: Source::Statement("SELECT 1".into()),
            part: Some(Part::Range {
                column: "date".into(),
                from: Some("2026-11-01".into()),
                to: None,
            }),
        };
        assert_eq!(TicketBody::decode(&body.encode()), Ok(body));
        assert!(TicketBody::decode(b"garbage").is_err());
    }
}
