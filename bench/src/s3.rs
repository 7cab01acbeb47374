//! `s3`: the query suite on a warehouse in S3 against the same warehouse on local disk, both
//! warm: one long-lived session each (as `tidemark serve` keeps one warehouse handle), one
//! warm-up run per statement, then the median of the timed runs. The target is S3 within 1.5×
//! of local once warm; the S3 side is moto on loopback unless `--s3-endpoint` names a server.
//! Writes `bench/RESULTS-s3.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine::{StorageConfig, Warehouse, WarehouseSession};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::queries::data::dataset;
use crate::queries::{in_process, median_of};
use tidemark_bench::suite::{statements, Size};

/// Copy every file under `dir` to `store` under `prefix`.
async fn upload(dir: &Path, store: &Arc<dyn ObjectStore>, prefix: &str) -> anyhow::Result<u64> {
    let mut bytes = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(dir)?
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(entry.path())?;
            bytes += data.len() as u64;
            store
                .put(
                    &ObjectPath::from(format!("{prefix}/{relative}")),
                    bytes::Bytes::from(data).into(),
                )
                .await?;
        }
    }
    Ok(bytes)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(
    size: &str,
    runs: usize,
    dir: PathBuf,
    reuse: bool,
    endpoint: Option<String>,
    results: PathBuf,
) -> anyhow::Result<()> {
    let size = Size::named(size)?;
    let data = dataset(&dir, &size, reuse).await?;
    let local_dir = dir.join("compacted").join("wh");
    let local = Warehouse::open(
        local_dir.to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    engine::marts::load_seeds(&local, &dir.join("compacted").join("seeds")).await?;

    let (endpoint, bucket, mut config) = match endpoint {
        Some(endpoint) => (
            endpoint,
            "tidemark-bench".to_string(),
            StorageConfig::default(),
        ),
        None => {
            let moto = testdata::backend::moto();
            let mut config = StorageConfig::default();
            for (key, value) in testdata::backend::S3_TEST_CREDENTIALS {
                config.options.insert(key.to_string(), value.to_string());
            }
            (moto.endpoint.clone(), moto.create_bucket(), config)
        }
    };
    config.s3_endpoint = Some(endpoint.clone());
    let url = format!("s3://{bucket}/wh");
    let store = engine::storage::s3_store(&url::Url::parse(&url)?, &config)?
        .context("an s3:// URL has a store")?;
    let started = std::time::Instant::now();
    let uploaded = upload(&local_dir, &store, "wh").await?;
    eprintln!(
        "uploaded {:.1} MB to {url} on {endpoint} in {:.1} s",
        uploaded as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let remote = Warehouse::open(&url, &config).await?;
    let cache = remote
        .file_cache()
        .context("an S3 warehouse has a file cache")?
        .clone();
    let local_session = WarehouseSession::new(local.clone()).await?;
    let remote_session = WarehouseSession::new(remote.clone()).await?;

    let mut lines = Vec::new();
    let mut log_sum = 0.0;
    let mut measured = 0;
    for (name, sql, _) in statements(&size, data.versions) {
        let (local_time, local_rows) = median_of(runs, || in_process(&local_session, &sql)).await?;
        let (remote_time, remote_rows) =
            median_of(runs, || in_process(&remote_session, &sql)).await?;
        anyhow::ensure!(
            local_rows == remote_rows,
            "{name}: {local_rows} rows locally, {remote_rows} on S3"
        );
        let ratio = ms(remote_time) / ms(local_time).max(0.001);
        log_sum += ratio.ln();
        measured += 1;
        eprintln!(
            "  {name}: local {:.1} ms, S3 {:.1} ms ({ratio:.2}×)",
            ms(local_time),
            ms(remote_time)
        );
        lines.push(format!(
            "| {name} | {:.1} | {:.1} | {ratio:.2}× |",
            ms(local_time),
            ms(remote_time)
        ));
    }
    let geomean = (log_sum / measured as f64).exp();
    let stats = cache.stats();
    let report = format!(
        "# S3 warehouse against local disk, warm ({} size, {} rows)\n\n\
         `tidemark-bench s3 --size {}`: the query suite in process on one warehouse copied to \
         S3 ({}) and on local disk; one warm-up run per statement, then the median of {runs} \
         runs. Target: S3 within 1.5× of local once warm.\n\n\
         | statement | local ms | S3 ms | S3 / local |\n| --- | ---: | ---: | ---: |\n{}\n\n\
         **Geometric mean S3 / local: {geomean:.2}×** (target ≤ 1.5×).\n\n\
         File cache after the run: {} files, {:.1} MB of {:.0} MB, {} hits, {} misses, {} \
         evictions.\n",
        size.name,
        size.rows(),
        size.name,
        if endpoint.contains("127.0.0.1") {
            "moto on loopback"
        } else {
            endpoint.as_str()
        },
        lines.join("\n"),
        stats.files,
        stats.bytes as f64 / 1e6,
        stats.bound as f64 / 1e6,
        stats.hits,
        stats.misses,
        stats.evictions
    );
    println!("{report}");
    std::fs::write(&results, &report).with_context(|| format!("writing {}", results.display()))?;
    eprintln!("wrote {}", results.display());
    Ok(())
}
