//! Small shared pieces: secret masking, error chains.

use std::sync::{Arc, RwLock};

/// Secret values resolved at run time. Anything shown to a person (logs, errors) passes
/// through [`Secrets::mask`] first.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<RwLock<Vec<String>>>);

impl Secrets {
    pub fn add(&self, secret: &str) {
        // Very short values would mask ordinary text; they are not secrets worth the name.
        if secret.len() >= 4 {
            let mut list = self.0.write().unwrap_or_else(|e| e.into_inner());
            list.push(secret.to_string());
            // Percent-encoded forms appear in URLs.
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret {
                list.push(encoded);
            }
        }
    }

    pub fn mask(&self, text: &str) -> String {
        let list = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in list.iter() {
            out = out.replace(s.as_str(), "****");
        }
        out
    }
}

/// An error and its sources, one `: ` apart, each shown once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_url_encoded_secrets() {
        let s = Secrets::default();
        s.add("p@ss word");
        assert_eq!(s.mask("x p@ss word y p%40ss+word"), "x **** y ****");
        s.add("abc");
        assert_eq!(s.mask("abc"), "abc");
    }
}
