//! A page of 1,000 staged character records through each reader: the twelve flat
//! columns, then the same with every `episode` element (the nested spec).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::load::plan::Plan;
use sluice_readers::*;

fn readers(c: &mut Criterion) {
    let lines = page();
    for (nested, file) in [(false, "character.yaml"), (true, "character_nested.yaml")] {
        let pipeline = spec(file);
        let resource = pipeline.resource("character").unwrap();
        let p = Plan::new(&resource.tables, &resource.filter).unwrap();
        let sonic = Sonic::new(nested);
        let mut g = c.benchmark_group(if nested { "nested" } else { "flat" });
        g.throughput(Throughput::Elements(1000));
        let mut buf = Vec::with_capacity(4096);
        type Reader<'a> = Box<dyn FnMut(&str) -> Option<usize> + 'a>;
        let readers: Vec<(&str, Reader<'_>)> = vec![
            ("sluice plan (serde visitors)", Box::new(|l| plan(&p, l))),
            ("serde_json::Value whole", Box::new(|l| whole(l, nested))),
            ("serde derive, borrowed", Box::new(|l| derive(l, nested))),
            ("sonic-rs get_many", Box::new(|l| sonic.read(l))),
            ("simd-json borrowed DOM", Box::new(|l| simd_dom(&mut buf, l, nested))),
        ];
        for (name, mut read) in readers {
            g.bench_function(name, |b| {
                b.iter(|| lines.lines().map(|l| read(l).unwrap()).sum::<usize>())
            });
        }
        let mut buf = Vec::with_capacity(4096);
        g.bench_function("simd-json tape", |b| {
            b.iter(|| {
                lines
                    .lines()
                    .map(|l| simd_tape(&mut buf, l, nested).unwrap())
                    .sum::<usize>()
            })
        });
        g.finish();
    }
}

criterion_group!(all, readers);
criterion_main!(all);
