//! The benchmark's synthetic API: `generate` writes N Rick-and-Morty-shaped character
//! records as pages of JSON with `info.next` links; `serve` serves a folder of pages over
//! HTTP/1.1 keep-alive on loopback, fast enough not to be the bottleneck.
//!
//!     cargo run --release --example bench_api -- generate DIR RECORDS PER_PAGE BASE_URL
//!     cargo run --release --example bench_api -- serve DIR PORT
//!     cargo run --release --example bench_api -- csv BYTES PORT   (GET /file.csv, made as sent)
//!     cargo run --release --example bench_api -- parse DIR        (seconds to parse the pages)
//!     cargo run --release --example bench_api -- s3 DIR PORT      (an S3-compatible server, s3s-fs
//!                                                                  over DIR, SigV4 with the key pair
//!                                                                  bench-access / bench-secret)

// A test or bench binary exports nothing: its `pub` is for its own modules.
#![allow(unreachable_pub)]

use std::borrow::Cow;
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn generate(dir: PathBuf, records: u64, per_page: u64, base: &str) {
    std::fs::create_dir_all(&dir).unwrap();
    let pages = records.div_ceil(per_page);
    let statuses = ["Alive", "Dead", "unknown"];
    let species = ["Human", "Alien", "Humanoid", "Robot", "Mythological Creature"];
    let genders = ["Male", "Female", "unknown", "Genderless"];
    for page in 1..=pages {
        let mut out = Vec::with_capacity(700 * per_page as usize);
        let next = if page < pages {
            format!("\"{base}/api/character?page={}\"", page + 1)
        } else {
            "null".into()
        };
        let prev = if page > 1 {
            format!("\"{base}/api/character?page={}\"", page - 1)
        } else {
            "null".into()
        };
        write!(
            out,
            "{{\"info\":{{\"count\":{records},\"pages\":{pages},\"next\":{next},\"prev\":{prev}}},\"results\":["
        )
        .unwrap();
        let first = (page - 1) * per_page + 1;
        let last = (page * per_page).min(records);
        for id in first..=last {
            if id > first {
                out.push(b',');
            }
            let episodes: Vec<String> = (0..1 + id % 9)
                .map(|e| format!("\"https://rickandmortyapi.com/api/episode/{}\"", 1 + (id + e * 7) % 51))
                .collect();
            let origin = if id % 3 == 0 {
                String::new()
            } else {
                format!("https://rickandmortyapi.com/api/location/{}", 1 + id % 126)
            };
            write!(
                out,
                "{{\"id\":{id},\"name\":\"Character {id} Sanchez\",\"status\":\"{}\",\"species\":\"{}\",\"type\":\"{}\",\"gender\":\"{}\",\"origin\":{{\"name\":\"Earth (C-{})\",\"url\":\"{origin}\"}},\"location\":{{\"name\":\"Citadel of Ricks\",\"url\":\"https://rickandmortyapi.com/api/location/{}\"}},\"image\":\"https://rickandmortyapi.com/api/character/avatar/{id}.jpeg\",\"episode\":[{}],\"url\":\"https://rickandmortyapi.com/api/character/{id}\",\"created\":\"2017-11-04T18:48:46.250Z\"}}",
                statuses[(id % 3) as usize],
                species[(id % 5) as usize],
                if id % 2 == 0 { "" } else { "Parasite" },
                genders[(id % 4) as usize],
                id % 200,
                1 + id % 126,
                episodes.join(",")
            )
            .unwrap();
        }
        out.extend_from_slice(b"]}");
        std::fs::write(dir.join(format!("page-{page}.json")), out).unwrap();
    }
    println!("{pages} pages of up to {per_page} records in {}", dir.display());
}

/// A character as serde derive reads it, its strings borrowed from the page.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Character<'a> {
    id: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    species: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    gender: Cow<'a, str>,
    #[serde(borrow)]
    origin: Place<'a>,
    #[serde(borrow)]
    location: Place<'a>,
    #[serde(borrow)]
    image: Cow<'a, str>,
    #[serde(borrow)]
    episode: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    url: Cow<'a, str>,
    #[serde(borrow)]
    created: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Place<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    url: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    results: Vec<Character<'a>>,
}

/// The parse limit: the seconds it takes to parse every page of `dir` into borrowed
/// structs (serde derive), the least a JSON reader of these pages does. Reading the files
/// is not counted.
fn parse(dir: PathBuf) {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    pages.sort();
    let (mut took, mut records) = (std::time::Duration::ZERO, 0usize);
    for path in pages {
        let body = std::fs::read(&path).unwrap();
        let start = std::time::Instant::now();
        let page: Page = serde_json::from_slice(&body).unwrap();
        records += page.results.len();
        drop(page);
        took += start.elapsed();
    }
    eprintln!("{records} records parsed");
    println!("{:.2}", took.as_secs_f64());
}

/// Serve `service` over HTTP/1.1 keep-alive on loopback `port`, one task a connection, on
/// one worker thread, saying where.
fn serve_http<S, B>(port: u16, what: String, service: S)
where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        println!("serving {what}");
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
}

fn serve(dir: PathBuf, port: u16) {
    let what = format!("{} on http://127.0.0.1:{port}/api/character?page=N", dir.display());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let dir = dir.clone();
        async move {
            let page = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("page=")))
                .and_then(|p| p.parse::<u64>().ok())
                .unwrap_or(1);
            let resp = match tokio::fs::read(dir.join(format!("page-{page}.json"))).await {
                Ok(body) => hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body))),
                Err(_) => hyper::Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::from_static(b"{\"error\":\"There is nothing here\"}"))),
            };
            Ok::<_, Infallible>(resp.unwrap())
        }
    });
    serve_http(port, what, service);
}

/// Serve an S3-compatible store over `dir` (each bucket a folder) on loopback, checking
/// signatures, for the benchmark's S3 staging rounds.
fn serve_s3(dir: PathBuf, port: u16) {
    let fs = s3s_fs::FileSystem::new(&dir).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single("bench-access", "bench-secret"));
    serve_http(
        port,
        format!("S3 over {} on http://127.0.0.1:{port}", dir.display()),
        builder.build(),
    );
}

/// One CSV row of the file benchmark.
fn csv_row(id: u64, out: &mut Vec<u8>) {
    let statuses = ["paid", "refunded", "open"];
    writeln!(
        out,
        "{id},Customer {id} Sanchez,{}.{:02},2024-{:02}-{:02}T10:{:02}:00Z,{}",
        id % 10_000,
        id % 100,
        1 + id % 12,
        1 + id % 28,
        id % 60,
        statuses[(id % 3) as usize]
    )
    .unwrap();
}

/// Serve `/file.csv`: a CSV file of `bytes` bytes (a header and whole rows), made as it is
/// sent, so that the server holds one chunk whatever the size.
fn serve_csv(bytes: u64, port: u16) {
    let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| async move {
        let header = b"id,name,amount,created_at,status\n".to_vec();
        let chunks = futures_util::stream::unfold(
            (1u64, header.len() as u64, Some(header)),
            move |(id, sent, first)| async move {
                if first.is_none() && sent >= bytes {
                    return None;
                }
                let mut out = first.unwrap_or_default();
                let mut id = id;
                while out.len() < 256 << 10 && sent + (out.len() as u64) < bytes {
                    csv_row(id, &mut out);
                    id += 1;
                }
                let n = out.len() as u64;
                Some((
                    Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(out))),
                    (id, sent + n, None),
                ))
            },
        );
        let resp = hyper::Response::builder()
            .header("content-type", "text/csv")
            .body(http_body_util::StreamBody::new(chunks))
            .unwrap();
        Ok::<_, Infallible>(resp)
    });
    serve_http(
        port,
        format!("a {bytes}-byte CSV file on http://127.0.0.1:{port}/file.csv"),
        service,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("generate") if args.len() == 5 => generate(
            PathBuf::from(&args[1]),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            &args[4],
        ),
        Some("serve") if args.len() == 3 => serve(PathBuf::from(&args[1]), args[2].parse().unwrap()),
        Some("csv") if args.len() == 3 => serve_csv(args[1].parse().unwrap(), args[2].parse().unwrap()),
        Some("parse") if args.len() == 2 => parse(PathBuf::from(&args[1])),
        Some("s3") if args.len() == 3 => serve_s3(PathBuf::from(&args[1]), args[2].parse().unwrap()),
        _ => {
            eprintln!("usage: bench_api generate DIR RECORDS PER_PAGE BASE_URL | bench_api serve DIR PORT | bench_api csv BYTES PORT | bench_api parse DIR | bench_api s3 DIR PORT");
            std::process::exit(2);
        }
    }
}
