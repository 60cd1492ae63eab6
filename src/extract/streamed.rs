//! The page loop of a resource whose bodies are files (`format: jsonl | csv | xml`): each
//! response is decoded as it streams in (see [`super::decode`]) and its records go to the
//! sink batch by batch; the paginator sees the headers, the URL and the record counts.

use std::collections::HashSet;

use serde_json::Value;
use url::Url;

use super::decode::{decode, Chunks, DecodeError, Shape, Summary};
use super::http::{Client, Streamed};
use super::paginate::{self, Page, Request};
use super::{check_guards, unless_ignored, ExtractError, Extracted, RecordSink, Records, Tally};
use crate::spec::pipeline::Resource;

/// Extract `resource` from request `req` on, one streamed body a page.
pub(crate) async fn extract_streamed<S: RecordSink>(
    client: &Client,
    resource: &Resource,
    mut req: Request,
    sink: &mut S,
) -> Result<Extracted, ExtractError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut stats = Extracted::default();
    let mut tally = Tally::default();
    let shape = Shape {
        format: resource.format.clone(),
        compression: resource.compression,
        records: resource.records.clone(),
        limit: client.max_response_size(),
    };
    loop {
        let page_no = stats.pages + 1;
        check_guards(resource, page_no, &req, &mut seen)?;
        let fetched = client
            .fetch_stream(resource.method, &req, &resource.name, page_no)
            .await;
        let Some(streamed) = unless_ignored(fetched, page_no > 1, &mut stats)? else {
            return Ok(stats);
        };
        let headers = streamed.headers.clone();
        let got = read_streamed(streamed, &shape, resource, page_no, &req.url, sink).await?;
        stats.pages += 1;
        stats.records += got.records;
        let fullest = tally.fullest;
        tally.page(resource, &Value::Null, got.records as usize);
        tracing::debug!(resource = %resource.name, page = page_no, records = got.records, "page");
        if got.stopped || client.last_page_recorded(page_no) {
            (stats.stopped, stats.capped) = (got.stopped, !got.stopped);
            return Ok(stats);
        }
        let page = Page {
            url: &req.url,
            sent_body: req.body.as_ref(),
            sent_headers: &req.headers,
            headers: &headers,
            body: &Value::Null,
            records: got.records as usize,
            last_record: got.last.as_ref(),
            index: stats.pages - 1,
            read: stats.records,
            fullest,
        };
        let next = match got.records == 0 && !tally.more {
            true => None,
            false => paginate::next(&resource.paginator, &page).map_err(|detail| ExtractError::Incomplete {
                resource: resource.name.clone(),
                page: page_no,
                detail,
            })?,
        };
        match next {
            Some(next) => req = next,
            None => {
                tally.check(resource, page_no, &stats, &Value::Null, got.records as usize, false)?;
                stats.total = tally.total;
                return Ok(stats);
            }
        }
    }
}

/// Decode one streamed body into `sink`: the connection feeds a blocking decoder chunk by
/// chunk, and the decoder hands back batches of records, so memory holds a few chunks
/// and one batch.
async fn read_streamed<S: RecordSink>(
    mut body: Streamed,
    shape: &Shape,
    resource: &Resource,
    page: u64,
    url: &Url,
    sink: &mut S,
) -> Result<Summary, ExtractError> {
    let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel(8);
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Vec<Value>>(2);
    let decoder_shape = shape.clone();
    let decoding = tokio::task::spawn_blocking(move || {
        let input = Chunks {
            rx: chunk_rx,
            current: bytes::Bytes::new(),
        };
        decode(input, &decoder_shape, &mut |batch| {
            batch_tx.blocking_send(batch).is_ok()
        })
    });
    let feeding = tokio::spawn(async move {
        loop {
            let chunk = body.chunk().await;
            let end = !matches!(chunk, Ok(Some(_)));
            let sent = match chunk {
                Ok(Some(c)) => chunk_tx.send(Ok(c)).await,
                Ok(None) => break,
                Err(e) => chunk_tx.send(Err(e)).await,
            };
            if sent.is_err() || end {
                break;
            }
        }
    });
    let (mut written, mut stopped) = (Ok(()), false);
    while let Some(batch) = batch_rx.recv().await {
        match sink.page(&Records::Values(batch)).await {
            Ok(true) => {}
            Ok(false) => {
                stopped = true;
                break;
            }
            Err(e) => {
                written = Err(e);
                break;
            }
        }
    }
    // The decoder sees the receiver closed (or the body's end) and stops.
    drop(batch_rx);
    let decoded = decoding
        .await
        .map_err(|e| ExtractError::Config(format!("a decoding task failed: {e}")));
    feeding.abort();
    written?;
    let mut summary = decoded?.map_err(|e| match e {
        DecodeError::TooLarge => ExtractError::TooLarge {
            resource: resource.name.clone(),
            page,
            url: crate::util::shown_url(url.as_str()),
            limit: shape.limit,
        },
        e => ExtractError::Body {
            resource: resource.name.clone(),
            page,
            url: crate::util::shown_url(url.as_str()),
            format: shape.format.name(),
            detail: e.to_string(),
        },
    })?;
    summary.stopped |= stopped;
    Ok(summary)
}
