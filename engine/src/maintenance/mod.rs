//! Table maintenance: compaction (packing small files, clustering settled days, checkpoints)
//! and vacuum (deleting files no readable version needs).

mod compact;
mod vacuum;

pub use compact::{
    compact, compact_all, CompactOptions, CompactReport, Settled, DEFAULT_TARGET_SIZE,
    DEFAULT_WINDOW_DAYS,
};
pub use vacuum::{
    check_readable_version, oldest_readable_version, vacuum, vacuum_all, VacuumReport,
    DEFAULT_RETENTION,
};
