//! Hot paths of a load, measured with criterion: reading and mapping a page of records
//! (the single-pass plan against the general evaluator),
//! coercing values, and encoding binary COPY rows. `cargo bench`.

// A test or bench binary exports nothing: its `pub` is for its own modules.
#![allow(unreachable_pub)]

use std::borrow::Cow;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Value;
use sluice::load::plan::Plan;
use sluice::load::record::{encode_row, map_record, map_row, needed_fields, parse_record, RecordRows, RunMeta};
use sluice::value::ColumnType;
use sluice::value::{coerce, Cell, Val};

fn page_of_characters() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/api/rickandmorty/character/page-1.json"
    ))
    .unwrap();
    let page: Value = serde_json::from_str(&text).unwrap();
    // 1,000 records: the fixture's 20, repeated with new ids.
    let records: Vec<String> = (0..1000)
        .map(|i| {
            let mut r = page["results"][i % 20].clone();
            r["id"] = Value::from(i + 1);
            serde_json::to_string(&r).unwrap()
        })
        .collect();
    records.join("\n")
}

fn benches(c: &mut Criterion) {
    let spec_path = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/rickandmorty.yaml");
    let pipeline = sluice::spec::compile_text(spec_path, &std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let resource = pipeline.resource("character").unwrap();
    let meta = RunMeta {
        run_id: "bench".into(),
        run_time: chrono::Utc::now(),
        pipeline: "rickandmorty".into(),
    };
    let lines = page_of_characters();

    // A staged record to rows, character + appearance (about 6 rows a record): the
    // single-pass plan against the general evaluator (a parsed record's fields, then the
    // paths), which mapping falls back to for paths the plan cannot follow.
    let mut g = c.benchmark_group("page");
    g.throughput(Throughput::Elements(1000));
    let fields = needed_fields(&resource.tables, &resource.filter);
    g.bench_function("general: parse + map 1000 records", |b| {
        let mut rows = RecordRows::default();
        b.iter(|| {
            let mut n = 0;
            for line in lines.lines() {
                let record = parse_record(line, fields.as_deref()).unwrap();
                map_record(&resource.tables, &record, &meta, &mut rows).unwrap();
                n += rows.rows[1].len();
            }
            n
        })
    });
    let plan = Plan::new(&resource.tables, &resource.filter).expect("the plan follows the character paths");
    g.bench_function("plan: read + map 1000 records", |b| {
        let mut rows = RecordRows::default();
        b.iter(|| {
            let mut n = 0;
            for line in lines.lines() {
                let captured = plan.read(line).unwrap();
                plan.map(&resource.tables, &captured, &meta, &mut rows).unwrap();
                n += rows.rows[1].len();
            }
            n
        })
    });
    g.bench_function("parse 1000 records whole (serde_json::Value)", |b| {
        b.iter(|| {
            lines
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
    });
    let parsed: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    g.bench_function("map + encode 1000 parsed records (character + appearance)", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            out.clear();
            for (i, r) in parsed.iter().enumerate() {
                let row = map_row(&resource.tables[0], r, None, &meta).unwrap();
                encode_row(&row, Some("bench"), &[], &mut out);
                for el in resource.tables[1].each.as_ref().unwrap().elements(r).unwrap() {
                    let child = map_row(&resource.tables[1], &el, Some(&row), &meta).unwrap();
                    encode_row(&child, Some("bench"), &[i as i64], &mut out);
                }
            }
            out.len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("coerce");
    let cases = [
        (
            "numeric from a 38-digit string",
            "43.140867627459137071000000000000000000",
            ColumnType::Numeric,
        ),
        ("integer from a string", "144", ColumnType::Integer),
        (
            "timestamptz from ISO 8601",
            "2017-11-04T18:48:46.250Z",
            ColumnType::Timestamptz,
        ),
        ("text", "Rick Sanchez", ColumnType::Text),
    ];
    for (name, text, ty) in cases {
        g.bench_function(name, |b| {
            b.iter(|| coerce(&Val::Text(Cow::Borrowed(text)), ty).unwrap())
        });
    }
    g.finish();

    let row = vec![
        Cell::Int(1),
        Cell::Text("Rick Sanchez".into()),
        Cell::Text("Alive".into()),
        Cell::Numeric("43.140867627459137071".into()),
        Cell::Time(chrono::Utc::now()),
        Cell::Null,
    ];
    c.bench_function("encode one COPY row", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(256),
            |out| encode_row(&row, Some("run"), &[], out),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
