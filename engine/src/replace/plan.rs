//! Planning a replace: which files to remove, looked up in the slice index by partition.

use std::collections::BTreeSet;

use arrow::datatypes::Date32Type;
use deltalake::kernel::Remove;
use object_store::path::Path;

use super::index::{Accounts, SliceIndex};
use crate::slice::SliceKey;

/// A file holding rows of a replaced slice and of other slices: it is read, and its other
/// rows are written back.
#[derive(Debug, Clone)]
pub(crate) struct MixedFile {
    pub location: Path,
    pub source: String,
    pub date_days: i32,
}

/// The files a replace removes.
#[derive(Debug, Default)]
pub(crate) struct Removal {
    pub removes: Vec<Remove>,
    pub mixed: Vec<MixedFile>,
    /// Rows in the removed files (mixed files included; their survivors are subtracted later).
    pub rows_removed: usize,
}

/// Plan the removals for replacing `slices`.
pub(crate) fn plan_removals(index: &SliceIndex, slices: &BTreeSet<SliceKey>) -> Removal {
    let mut plan = Removal::default();
    for file in index.files_of(slices) {
        plan.removes.push(file.remove_action());
        plan.rows_removed += file.num_records;
        if matches!(file.accounts, Accounts::One(_)) {
            continue; // one slice, and files_of matched it: dropped whole
        }
        plan.mixed.push(MixedFile {
            // Log paths are URL-encoded relative paths.
            location: Path::from_url_path(&file.path)
                .unwrap_or_else(|_| Path::from(file.path.as_str())),
            source: file.source.clone(),
            date_days: Date32Type::from_naive_date(file.date),
        });
    }
    plan
}
