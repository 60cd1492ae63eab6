//! Loading one resource: its staged objects stream through the mapper into binary COPY
//! (root rows directly, nested rows from their spill files), then the write modes move
//! them into the real tables.

use std::io::Read;
use std::time::Instant;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Transaction;

use super::ddl::qualified;
use super::map::{RunMeta, COPY_HEADER};
use super::mapper::{jsonb_record, map_objects, CHUNK};
use super::merge::{merge, remove_gone_children};
use super::{db, LoadError, ObjectFeed, TableStats};
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Pipeline, Resource, Table, WriteMode, RUN_ID_COLUMN};
use crate::stage::manifest::ObjectManifest;
use crate::stage::{LocalObject, Staging};
use crate::util::clip;

pub(super) fn temp_name(i: usize) -> String {
    format!("_sluice_tmp_{i}")
}

/// Appends and replaces COPY straight into the table; merges go through a temporary
/// table (with each row's ordinal) that the upsert reads.
fn copy_sql(schema: &str, t: &Table, i: usize) -> String {
    let mut cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    if t.run_id_column {
        cols.push(quote_ident(RUN_ID_COLUMN));
    }
    let target = if t.write == WriteMode::Merge {
        cols.push("\"_sluice_ord\"".into());
        quote_ident(&temp_name(i))
    } else {
        qualified(schema, &t.name)
    };
    format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", cols.join(", "))
}

pub(super) async fn load_resource(
    tx: &Transaction<'_>,
    p: &Pipeline,
    store: &impl Staging,
    resource: &Resource,
    objects: ObjectFeed,
    meta: &RunMeta,
    spill_dir: &std::path::Path,
) -> Result<Vec<TableStats>, LoadError> {
    let t0 = Instant::now();
    let schema = &p.warehouse().schema;
    for (i, t) in resource.tables.iter().enumerate() {
        if t.write == WriteMode::Replace {
            tx.execute(&format!("DELETE FROM {}", qualified(schema, &t.name)), &[])
                .await
                .map_err(db(format!("clear `{}` for replace", t.name)))?;
        }
        if t.write != WriteMode::Merge {
            continue;
        }
        let mut cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.column_type.sql()))
            .collect();
        if t.run_id_column {
            cols.push(format!("{} text", quote_ident(RUN_ID_COLUMN)));
        }
        cols.push("\"_sluice_ord\" bigint".into());
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE {} ({}) ON COMMIT DROP",
            quote_ident(&temp_name(i)),
            cols.join(", ")
        ))
        .await
        .map_err(db(format!("create the staging table of `{}`", t.name)))?;
    }
    let root_copy = tx
        .copy_in(&copy_sql(schema, &resource.tables[0], 0))
        .await
        .map_err(db(format!("start COPY into `{}`", resource.tables[0].name)))?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let (object_tx, object_rx) = tokio::sync::mpsc::channel::<(ObjectManifest, LocalObject)>(2);
    let (res, meta_owned) = (resource.clone(), meta.clone());
    let spill_dir = spill_dir.to_path_buf();
    let mapper = tokio::task::spawn_blocking(move || map_objects(&res, object_rx, &meta_owned, &spill_dir, sender));
    // Objects go to the mapper as they become available: all at once from a manifest, one
    // by one from an extraction still running.
    let feeding = async move {
        let send = |o: ObjectManifest, local: LocalObject| object_tx.send((o, local));
        // When this resource's load really starts: at once for a staged run, with the
        // first part for a run still being extracted (the wait is the extraction's time).
        let mut first = None;
        match objects {
            ObjectFeed::Listed(list) => {
                first = Some(Instant::now());
                for o in list {
                    let local = store.open(&o.key).await?;
                    if send(o, local).await.is_err() {
                        break;
                    }
                }
            }
            ObjectFeed::Live(mut rx) => {
                while let Some(o) = rx.recv().await {
                    first.get_or_insert_with(Instant::now);
                    let local = store.open(&o.key).await?;
                    if send(o, local).await.is_err() {
                        break;
                    }
                }
            }
        }
        Ok::<Option<Instant>, LoadError>(first)
    };
    futures_util::pin_mut!(root_copy);
    let copying = async {
        // Owned here so that a COPY failure drops it at once: the mapper's next send then
        // fails and it stops, which in turn stops the feeding; nothing waits on anything.
        let mut receiver = receiver;
        let mut bar = crate::progress::LoadBar::new(&resource.name);
        root_copy
            .send(Bytes::from_static(COPY_HEADER))
            .await
            .map_err(db(format!("COPY into `{}`", resource.tables[0].name)))?;
        while let Some(chunk) = receiver.recv().await {
            bar.sent(chunk.len() as u64);
            root_copy
                .send(Bytes::from(chunk))
                .await
                .map_err(db(format!("COPY into `{}`", resource.tables[0].name)))?;
        }
        Ok::<(), LoadError>(())
    };
    let (feed_result, copy_result) = tokio::join!(feeding, copying);
    let outcome = mapper
        .await
        .map_err(|e| LoadError::Io(format!("the mapping thread failed: {e}")))??;
    let t0 = feed_result?.unwrap_or(t0);
    copy_result?;
    root_copy
        .finish()
        .await
        .map_err(db(format!("COPY into `{}`", resource.tables[0].name)))?;
    for (i, spill) in outcome.spills.iter().enumerate() {
        let t = &resource.tables[i + 1];
        let sink = tx
            .copy_in(&copy_sql(schema, t, i + 1))
            .await
            .map_err(db(format!("start COPY into `{}`", t.name)))?;
        futures_util::pin_mut!(sink);
        let mut file = spill
            .reopen()
            .map_err(|e| LoadError::Io(format!("reopen a spill file: {e}")))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| LoadError::Io(format!("read a spill file: {e}")))?;
            if n == 0 {
                break;
            }
            sink.send(Bytes::copy_from_slice(&buf[..n]))
                .await
                .map_err(db(format!("COPY into `{}`", t.name)))?;
        }
        sink.finish().await.map_err(db(format!("COPY into `{}`", t.name)))?;
    }
    // Before any staging table is dropped: a loaded parent's elements are its children.
    let mut deleted = vec![0; resource.tables.len()];
    for (i, gone) in deleted.iter_mut().enumerate() {
        *gone = remove_gone_children(tx, schema, resource, i).await?;
    }
    let mut stats = Vec::new();
    for (i, t) in resource.tables.iter().enumerate() {
        let (inserted, updated) = if t.write == WriteMode::Merge {
            let counts = merge(tx, schema, t, &temp_name(i)).await?;
            tx.batch_execute(&format!("DROP TABLE {}", quote_ident(&temp_name(i))))
                .await
                .map_err(db(format!("drop the staging table of `{}`", t.name)))?;
            counts
        } else {
            (outcome.rows[i], 0)
        };
        stats.push(TableStats {
            resource: resource.name.clone(),
            table: t.name.clone(),
            records: outcome.records,
            rows: outcome.rows[i],
            inserted,
            updated,
            deleted: deleted[i],
            rejected: if i == 0 { outcome.rejected } else { 0 },
            seconds: t0.elapsed().as_secs_f64(),
            matched: outcome
                .coverage
                .get(i)
                .map(|cov| {
                    t.columns
                        .iter()
                        .zip(&cov.matched)
                        .filter(|(c, _)| c.value.reads_record())
                        .map(|(c, n)| (c.name.clone(), *n))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    for r in &outcome.rejects {
        tx.execute(
            "INSERT INTO \"_sluice\".\"rejects\" (pipeline, run_id, resource, table_name, object_key, record_number, column_name, value, reason, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)",
            &[&p.name(), &meta.run_id, &resource.name, &r.table, &r.object, &(r.record as i64), &r.column, &clip(&r.value, 1000), &r.reason, &jsonb_record(&r.raw)],
        )
        .await
        .map_err(db("write the rejects table"))?;
    }
    Ok(stats)
}
