//! `validate`, `schema` and `ddl` through the real binary.

use crate::support::{assert_snapshot, fixture, pg, root, Sluice};

#[test]
fn reference_pipelines_are_valid() {
    let run = Sluice::new(["validate", "pipelines/rickandmorty.yaml", "pipelines/coincap.yaml"])
        .run()
        .success();
    assert_eq!(
        run.stdout,
        "pipelines/rickandmorty.yaml: ok\npipelines/coincap.yaml: ok\n"
    );
}

#[test]
fn every_invalid_fixture_gives_its_expected_diagnostics() {
    let dir = fixture("invalid");
    let mut specs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    specs.sort();
    assert!(
        specs.len() >= 25,
        "expected at least 25 invalid-spec fixtures, found {}",
        specs.len()
    );
    for spec in specs {
        let rel = spec.strip_prefix(root()).unwrap().to_str().unwrap().to_string();
        let run = Sluice::new(["validate", &rel]).run();
        assert_eq!(run.code, 1, "{rel} should be invalid\n{}", run.stdout);
        assert_snapshot(&spec.with_extension("expected"), &run.stdout);
    }
}

#[test]
fn all_problems_of_a_file_are_reported_in_one_run() {
    let run = Sluice::new(["validate", "tests/fixtures/invalid/many_problems.yaml"])
        .run()
        .failure(1);
    let errors = run.stdout.lines().filter(|l| l.contains(": error: ")).count();
    assert!(errors >= 5, "expected every problem at once, got:\n{}", run.stdout);
    assert!(run.stdout.ends_with(&format!("{errors} problems in 1 file\n")));
}

#[test]
fn json_and_github_formats() {
    let file = "tests/fixtures/invalid/unknown_column_type.yaml";
    let run = Sluice::new(["validate", "--format", "json", file]).run().failure(1);
    let line = run.stdout.lines().next().expect("one diagnostic");
    let v: serde_json::Value = serde_json::from_str(line).expect("json diagnostic");
    assert_eq!(v["file"], file);
    assert_eq!(v["path"], "resources[0].table.columns[1].type");
    assert!(v["line"].as_u64().unwrap() > 1 && v["column"].as_u64().unwrap() > 1);
    let run = Sluice::new(["validate", "--format", "github", file]).run().failure(1);
    let expected_prefix = format!("::error file={file},line={},col={},title=sluice validate::resources[0].table.columns[1].type: unknown column type", v["line"], v["column"]);
    assert!(run.stdout.starts_with(&expected_prefix), "{}", run.stdout);
}

#[test]
fn validation_needs_no_environment() {
    // COINCAP_TOKEN and DATABASE_URL are unset (the runner removes them): still valid.
    Sluice::new(["validate", "pipelines/coincap.yaml"]).run().success();
}

#[test]
fn usage_errors_exit_2() {
    Sluice::new(["validate"]).run().failure(2);
    Sluice::new(["validate", "--format", "xml", "pipelines/coincap.yaml"])
        .run()
        .failure(2);
    Sluice::new(["frobnicate"]).run().failure(2);
}

#[test]
fn a_missing_file_is_named() {
    let run = Sluice::new(["validate", "nope.yaml"]).run().failure(1);
    assert!(
        run.stdout.starts_with("nope.yaml:1:1: error: cannot read the spec"),
        "{}",
        run.stdout
    );
}

#[test]
fn checked_in_schema_matches_the_binary() {
    let run = Sluice::new(["schema"]).run().success();
    let committed = std::fs::read_to_string(root().join("schemas/pipeline.schema.json")).unwrap();
    assert!(
        run.stdout == committed,
        "schemas/pipeline.schema.json is stale: run `sluice schema > schemas/pipeline.schema.json`"
    );
    for p in ["pipelines/rickandmorty.yaml", "pipelines/coincap.yaml"] {
        let text = std::fs::read_to_string(root().join(p)).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json\n"),
            "{p}"
        );
    }
}

#[test]
fn every_spec_field_is_documented_in_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(&Sluice::new(["schema"]).run().success().stdout).unwrap();
    let mut undocumented = Vec::new();
    let defs = schema["$defs"].as_object().unwrap();
    let mut objects: Vec<(&str, &serde_json::Value)> = defs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    objects.push(("RawSpec", &schema));
    for (name, def) in objects {
        let mut stack = vec![def];
        while let Some(s) = stack.pop() {
            if let Some(props) = s.get("properties").and_then(|p| p.as_object()) {
                for (field, fs) in props {
                    if field != "type" && fs.get("description").is_none() {
                        undocumented.push(format!("{name}.{field}"));
                    }
                }
            }
            for key in ["oneOf", "anyOf"] {
                if let Some(branches) = s.get(key).and_then(|b| b.as_array()) {
                    stack.extend(branches);
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "fields without a doc comment: {undocumented:?}"
    );
}

#[test]
fn ddl_matches_the_golden_files() {
    for name in ["rickandmorty", "coincap"] {
        for (dialect, file) in [
            ("postgres", format!("{name}.sql")),
            ("sqlite", format!("{name}.sqlite.sql")),
        ] {
            let spec = format!("pipelines/{name}.yaml");
            let run = Sluice::new(["ddl", &spec, "--dialect", dialect]).run().success();
            assert_snapshot(&fixture(&format!("ddl/{file}")), &run.stdout);
        }
    }
    // Without --dialect, the warehouse URL's: the reference pipelines default to SQLite.
    let spec = "pipelines/rickandmorty.yaml";
    let sqlite = Sluice::new(["ddl", spec]).env("DATABASE_URL", "").run().success();
    assert!(sqlite.stdout.starts_with("-- SQLite DDL"), "{}", sqlite.stdout);
    let pg = Sluice::new(["ddl", spec])
        .env("DATABASE_URL", "postgres://h/db")
        .run()
        .success();
    assert!(pg.stdout.starts_with("-- PostgreSQL DDL"), "{}", pg.stdout);
}

#[test]
fn sqlite_ddl_applies_and_keeps_types_keys_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("ddl.db")).unwrap();
    for name in ["rickandmorty", "coincap"] {
        let spec = format!("pipelines/{name}.yaml");
        let ddl = Sluice::new(["ddl", &spec, "--dialect", "sqlite"])
            .run()
            .success()
            .stdout;
        db.execute_batch(&ddl).unwrap();
        db.execute_batch(&ddl).unwrap();
    }
    let fks: Vec<String> = db
        .prepare("SELECT \"table\" || '.' || \"to\" || ' <- ' || \"from\" FROM pragma_foreign_key_list('character') ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        fks,
        [
            "location.location_id <- location_id",
            "location.location_id <- origin_id"
        ]
    );
    let types: Vec<(String, String)> = db
        .prepare("SELECT name, type FROM pragma_table_info('exchange_snapshot') ORDER BY cid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let ty = |c: &str| types.iter().find(|(n, _)| n == c).map(|(_, t)| t.as_str());
    // Exact decimals keep text affinity; SQLite would round a NUMERIC one to a double.
    assert_eq!(ty("percent_total_volume"), Some("NUMERIC TEXT"));
    assert_eq!(ty("snapshot_time"), Some("TIMESTAMPTZ TEXT"));
    let pk: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('appearance') WHERE pk > 0 ORDER BY pk")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pk, ["character_id", "episode_id"]);
    // Descriptions stay in the schema's text (SQLite has no COMMENT ON).
    let sql: String = db
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 'character'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        sql.contains("\"origin_id\" INTEGER /* Origin location; null when unknown */"),
        "{sql}"
    );
}

#[test]
fn ddl_applies_to_a_real_postgres_and_creates_the_keys() {
    let url = pg::fresh_database();
    for name in ["rickandmorty", "coincap"] {
        let ddl = Sluice::new(["ddl", &format!("pipelines/{name}.yaml"), "--dialect", "postgres"])
            .run()
            .success()
            .stdout;
        pg::execute(&url, &ddl);
        // Idempotent: applying it again changes nothing and fails nothing.
        pg::execute(&url, &ddl);
    }
    let tables = pg::query(
        &url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rickandmorty' ORDER BY 1",
    );
    let tables: Vec<String> = tables.into_iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(tables, ["appearance", "character", "episode", "location"]);
    let fks = pg::query(
        &url,
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'rickandmorty'::regnamespace AND contype = 'f' ORDER BY 1, 2",
    );
    let fks: Vec<String> = fks
        .into_iter()
        .map(|r| format!("{} {}", r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        fks,
        [
            "rickandmorty.\"character\" FOREIGN KEY (location_id) REFERENCES rickandmorty.location(location_id) DEFERRABLE INITIALLY DEFERRED",
            "rickandmorty.\"character\" FOREIGN KEY (origin_id) REFERENCES rickandmorty.location(location_id) DEFERRABLE INITIALLY DEFERRED",
            "rickandmorty.appearance FOREIGN KEY (character_id) REFERENCES rickandmorty.\"character\"(character_id) DEFERRABLE INITIALLY DEFERRED",
            "rickandmorty.appearance FOREIGN KEY (episode_id) REFERENCES rickandmorty.episode(episode_id) DEFERRABLE INITIALLY DEFERRED",
        ]
    );
    let pk = pg::scalar(
        &url,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'appearance_pkey'",
    );
    assert_eq!(pk.as_deref(), Some("PRIMARY KEY (character_id, episode_id)"));
    let comment = pg::scalar(&url, "SELECT obj_description('rickandmorty.episode'::regclass)");
    assert_eq!(comment.as_deref(), Some("Episodes, with their broadcast date"));
}

#[test]
fn the_spec_reference_is_current() {
    let generated = Sluice::new(["schema", "--format", "markdown"]).run().success().stdout;
    let readme = std::fs::read_to_string(root().join("docs/spec-reference.md")).unwrap();
    let start = readme
        .find("<!-- reference:start -->\n")
        .expect("reference start marker")
        + "<!-- reference:start -->\n".len();
    let end = readme.find("<!-- reference:end -->").expect("reference end marker");
    assert!(
        readme[start..end] == generated,
        "docs/spec-reference.md is stale: put `sluice schema --format markdown` between its markers"
    );
}

/// The guide and the docs: README.md, CONTRIBUTING.md and docs/*.md, each with its text.
fn guides() -> Vec<(String, String)> {
    let mut files = vec!["README.md".to_string(), "CONTRIBUTING.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root().join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (f, text)
        })
        .collect()
}

#[test]
fn every_spec_in_the_readme_and_docs_validates() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = 0;
    for (file, readme) in guides() {
        for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
            let block = block.split("\n```").next().unwrap();
            // The GitHub Actions workflow is YAML too, but no spec.
            if block.starts_with("# .github/workflows/") {
                continue;
            }
            let path = dir.path().join(format!("{}-{i}.yaml", file.replace('/', "-")));
            std::fs::write(&path, block).unwrap();
            let run = Sluice::new(["validate", path.to_str().unwrap()]).run();
            assert_eq!(
                run.code, 0,
                "{file}: yaml block {i} is not a valid spec:\n{}\n{block}",
                run.stdout
            );
            specs += 1;
        }
    }
    assert!(specs >= 5, "only {specs} specs found in the README and docs");
}

/// The `sluice …` command lines of a guide's `sh` and `console` blocks (continuations
/// joined, comments and leading variable assignments dropped), as words.
fn commands_in(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for block in text.split("```").skip(1).step_by(2) {
        let Some((lang, body)) = block.split_once('\n') else {
            continue;
        };
        let console = lang == "console";
        if lang != "sh" && !console {
            continue;
        }
        let mut joined = Vec::new();
        let mut cur = String::new();
        for line in body.lines() {
            let line = match console {
                true => match line.strip_prefix("$ ") {
                    Some(l) => l,
                    None if !cur.is_empty() => line,
                    None => continue,
                },
                false => line,
            };
            match line.trim_end().strip_suffix('\\') {
                Some(part) => cur.push_str(part),
                None => {
                    cur.push_str(line);
                    joined.push(std::mem::take(&mut cur));
                }
            }
        }
        for line in joined {
            let line = line.split(" #").next().unwrap_or("").trim();
            let words: Vec<String> = line
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .map(String::from)
                .collect();
            if words.first().is_some_and(|w| w == "sluice") {
                out.push(words);
            }
        }
    }
    out
}

#[test]
fn every_command_in_the_readme_and_docs_is_one_sluice_has() {
    let mut helps: std::collections::HashMap<Vec<String>, String> = Default::default();
    let mut seen = 0;
    for (file, text) in guides() {
        for words in commands_in(&text) {
            // `sluice deploy aws …` has a sub-subcommand.
            let sub: Vec<String> = match words.get(1).map(String::as_str) {
                Some("deploy") => words[1..3.min(words.len())].to_vec(),
                Some(_) => words[1..2].to_vec(),
                None => panic!("{file}: `sluice` with no command"),
            };
            let help = helps.entry(sub.clone()).or_insert_with(|| {
                let mut args = sub.clone();
                args.push("--help".into());
                let run = Sluice::new(args).run();
                assert_eq!(
                    run.code,
                    0,
                    "{file}: `sluice {}` is not a command: {}",
                    sub.join(" "),
                    run.stderr
                );
                run.stdout
            });
            for flag in words.iter().filter(|w| w.starts_with('-')) {
                let flag = flag.split('=').next().unwrap();
                let known = help
                    .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                    .any(|w| w == flag || w.strip_suffix("...") == Some(flag));
                assert!(known, "{file}: `{}` has no flag `{flag}`:\n{help}", words.join(" "));
            }
            seen += 1;
        }
    }
    assert!(seen >= 30, "only {seen} commands found in the README and docs");
}
