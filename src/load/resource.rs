//! Loading one resource, whatever the warehouse: its staged objects are fed to the
//! warehouse's row writer as they become available, then the write modes finish the
//! tables (replace cleared them first; merge upserts from staging tables, after removing
//! the nested rows a loaded parent no longer holds).

use std::time::Instant;

use super::merge::{remove_gone_children, staging_columns, temp_name};
use super::record::RunMeta;
use super::warehouse::Warehouse;
use super::{LoadError, ObjectFeed, TableStats};
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Pipeline, Resource, WriteMode, RUN_ID_COLUMN};
use crate::stage::manifest::ObjectManifest;
use crate::stage::{Backend, LocalObject};
use crate::value::ColumnType;

pub(super) async fn load_resource<W: Warehouse>(
    w: &mut W,
    p: &Pipeline,
    store: &impl Backend,
    resource: &Resource,
    objects: ObjectFeed,
    meta: &RunMeta,
) -> Result<Vec<TableStats>, LoadError> {
    let t0 = Instant::now();
    let schema = &p.warehouse().schema;
    let d = w.dialect();
    for (i, t) in resource.tables.iter().enumerate() {
        match t.write {
            WriteMode::Replace => {
                w.execute(
                    &format!("DELETE FROM {}", d.table(schema, &t.name)),
                    &format!("clear `{}` for replace", t.name),
                )
                .await?;
            }
            WriteMode::Merge => {
                // The table's columns and the ordinals; dropped after the upsert (and gone
                // with a rollback).
                let mut cols: Vec<String> = t
                    .columns
                    .iter()
                    .map(|c| format!("{} {}", quote_ident(&c.name), d.column_type(c.column_type)))
                    .collect();
                if t.run_id_column {
                    cols.push(format!(
                        "{} {}",
                        quote_ident(RUN_ID_COLUMN),
                        d.column_type(ColumnType::Text)
                    ));
                }
                for c in staging_columns(t) {
                    cols.push(format!("{} {}", quote_ident(c), d.column_type(ColumnType::Bigint)));
                }
                w.execute(
                    &format!("CREATE TEMP TABLE {} ({})", quote_ident(&temp_name(i)), cols.join(", ")),
                    &format!("create the staging table of `{}`", t.name),
                )
                .await?;
            }
            WriteMode::Append => {}
        }
    }
    let (object_tx, object_rx) = tokio::sync::mpsc::channel::<(ObjectManifest, LocalObject)>(2);
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
    let writing = w.write_rows(schema, resource, object_rx, meta);
    let (feed_result, outcome) = tokio::join!(feeding, writing);
    let outcome = outcome?;
    let t0 = feed_result?.unwrap_or(t0);
    drop_superseded(w, resource).await?;
    // Before any staging table is dropped: a loaded parent's elements are its children.
    let mut deleted = vec![0; resource.tables.len()];
    for (i, gone) in deleted.iter_mut().enumerate() {
        *gone = remove_gone_children(w, schema, resource, i).await?;
    }
    let mut stats = Vec::new();
    for (i, t) in resource.tables.iter().enumerate() {
        let (inserted, updated) = if t.write == WriteMode::Merge {
            let counts = w.merge(schema, t, &temp_name(i)).await?;
            w.execute(
                &format!("DROP TABLE {}", quote_ident(&temp_name(i))),
                &format!("drop the staging table of `{}`", t.name),
            )
            .await?;
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
            ignored: 0,
            expectations: Vec::new(),
            filtered: if i == 0 { outcome.filtered } else { 0 },
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
    w.record_rejects(p.name(), &meta.run_id, &resource.name, &outcome.rejects)
        .await?;
    Ok(stats)
}

/// Under `merge`, a key the run holds twice keeps its last record, nested rows included:
/// the nested rows of the earlier records of a key leave the staging tables before the
/// merge (else a tag that the last record no longer has would stay).
async fn drop_superseded<W: Warehouse>(w: &mut W, resource: &Resource) -> Result<(), LoadError> {
    let root = &resource.tables[0];
    if root.write != WriteMode::Merge {
        return Ok(());
    }
    let same: Vec<String> = root
        .primary_key
        .iter()
        .map(|k| format!("l.{0} = e.{0}", quote_ident(k)))
        .collect();
    let root_tmp = quote_ident(&temp_name(0));
    let superseded = format!(
        "SELECT e.\"_sluice_ord\" FROM {root_tmp} e WHERE EXISTS (SELECT 1 FROM {root_tmp} l WHERE {} AND l.\"_sluice_ord\" > e.\"_sluice_ord\")",
        same.join(" AND ")
    );
    for (i, t) in resource.tables.iter().enumerate().skip(1) {
        if staging_columns(t).len() < 2 {
            continue;
        }
        w.execute(
            &format!(
                "DELETE FROM {} WHERE \"_sluice_rec\" IN ({superseded})",
                quote_ident(&temp_name(i))
            ),
            &format!("drop the rows of `{}` from superseded records", t.name),
        )
        .await?;
    }
    Ok(())
}
