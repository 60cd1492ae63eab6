//! SQL identifiers: the checks a spec name must pass and the one function that quotes
//! names into SQL. No SQL is ever built from an unquoted spec name.

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub(crate) const MAX_IDENT_BYTES: usize = 63;

/// Check a table, column or schema name. Names are lowercase so that analysts can write
/// them unquoted in their own SQL.
pub(crate) fn check_identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "`{name}` is {} bytes long; PostgreSQL names are at most {MAX_IDENT_BYTES} bytes",
            name.len()
        ));
    }
    let first = name.chars().next().unwrap_or('_');
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err(format!("`{name}` must start with a lowercase letter or `_`"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "`{name}` contains `{bad}`; use lowercase letters, digits and `_`"
        ));
    }
    Ok(())
}

/// Quote an identifier for SQL: `"name"`, with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal for SQL, safe under any `standard_conforming_strings`: quotes
/// are doubled, and text with a backslash becomes an escape string (`E'…'`, backslashes
/// doubled), which every server reads the same way. As PostgreSQL's own `quote_literal`.
pub(crate) fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_postgres_rules() {
        assert!(check_identifier("character_id").is_ok());
        assert!(check_identifier("_x1").is_ok());
        assert!(check_identifier("1abc").is_err());
        assert!(check_identifier("Name").is_err());
        assert!(check_identifier("a-b").is_err());
        assert!(check_identifier(&"a".repeat(63)).is_ok());
        assert!(check_identifier(&"a".repeat(64)).is_err());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"\'; DROP TABLE t; --"), r"E'\\''; DROP TABLE t; --'");
    }
}
