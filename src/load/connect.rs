//! Connecting to PostgreSQL: libpq URLs and key/value strings, TLS through rustls with
//! libpq's `sslmode` meanings (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert`, and errors that name host and database but never
//! the password.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

use super::LoadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Disable,
    /// Encrypt if the server can; do not verify (libpq `prefer`).
    Prefer,
    /// Encrypt; do not verify the certificate (libpq `require`).
    Require,
    /// Encrypt and verify the chain (`verify-ca`) and the host name (`verify-full`).
    Verify,
}

/// Split `sslmode` and `sslrootcert` out of a connection string (tokio-postgres does not
/// know all of libpq's values for them), reading both forms as libpq does: in a URL, query
/// keys and values are percent-decoded; in `key=value` form, white space may surround `=`
/// and values may be single-quoted with backslash escapes. The last setting wins. What is
/// left is handed to tokio-postgres's own parser.
fn split_tls(conn: &str) -> Result<(String, Tls, Option<String>), LoadError> {
    let mut mode = None;
    let mut root = None;
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_string(),
            Some((head, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    match percent_decode(k).as_str() {
                        "sslmode" => mode = Some(percent_decode(v)),
                        "sslrootcert" => root = Some(percent_decode(v)),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() {
                    head.to_string()
                } else {
                    format!("{head}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in conninfo_pairs(conn)? {
            match k.as_str() {
                "sslmode" => mode = Some(v),
                "sslrootcert" => root = Some(v),
                _ => kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))),
            }
        }
        kept.join(" ")
    };
    let tls = match mode.as_deref().unwrap_or("prefer") {
        "disable" => Tls::Disable,
        "allow" | "prefer" => Tls::Prefer,
        "require" if root.is_some() => Tls::Verify,
        "require" => Tls::Require,
        "verify-ca" | "verify-full" => Tls::Verify,
        other => {
            return Err(LoadError::Connect(format!(
                "unknown sslmode `{other}`; use disable, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    Ok((rest, tls, root))
}

/// `%XX` escapes decoded (and, as in libpq, `+` left alone).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The `key = value` pairs of a libpq key/value connection string.
fn conninfo_pairs(conn: &str) -> Result<Vec<(String, String)>, LoadError> {
    let bad = |why: &str| LoadError::Connect(format!("the warehouse connection string is not valid: {why}"));
    let mut out = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("`{key}` has no `=` and value")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad(&format!("the value of `{key}` has no closing quote"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `host:port/database as user`, for messages.
pub(crate) fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("database `{db}` on {host}:{port}")
}

/// Connect; the connection task runs on the current runtime. The password joins the
/// secrets, whichever form the connection string has.
pub(crate) async fn connect(conn: &str, secrets: &crate::util::Secrets) -> Result<(Client, String), LoadError> {
    let (rest, tls, root) = split_tls(conn)?;
    let mut config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        LoadError::Connect(format!(
            "the warehouse URL is not a valid PostgreSQL connection string: {e}"
        ))
    })?;
    if let Some(pw) = config.get_password() {
        secrets.add(&String::from_utf8_lossy(pw));
    }
    let target = describe(&config);
    config.ssl_mode(match tls {
        Tls::Disable => SslMode::Disable,
        Tls::Prefer => SslMode::Prefer,
        Tls::Require | Tls::Verify => SslMode::Require,
    });
    config.application_name("sluice");
    let fail =
        |e: tokio_postgres::Error| LoadError::Connect(format!("cannot connect to {target}: {}", super::pg_message(&e)));
    let client = if tls == Tls::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(fail)?;
        tokio::spawn(connection);
        client
    } else {
        let tls_config = client_config(tls, root.as_deref())?;
        let (client, connection) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config))
            .await
            .map_err(fail)?;
        tokio::spawn(connection);
        client
    };
    Ok((client, target))
}

fn client_config(tls: Tls, root: Option<&str>) -> Result<ClientConfig, LoadError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Connect(format!("TLS setup: {e}")))?;
    if tls != Tls::Verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match root {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| LoadError::Connect(format!("cannot read sslrootcert `{path}`: {e}")))?;
            let certs: Vec<CertificateDer<'static>> = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    LoadError::Connect(format!("sslrootcert `{path}` is not a PEM certificate bundle: {e}"))
                })?;
            if certs.is_empty() {
                return Err(LoadError::Connect(format!("sslrootcert `{path}` holds no certificate")));
            }
            roots.add_parsable_certificates(certs);
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// libpq's `require`: encrypted, not authenticated.
#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_split_out_of_urls_and_key_values() {
        let (rest, tls, root) = split_tls(
            "postgres://u:p@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db.example:5432/app?connect_timeout=5");
        assert_eq!(tls, Tls::Verify);
        assert_eq!(root.as_deref(), Some("/etc/rds.pem"));
        let (rest, tls, _) = split_tls("host=db user=app sslmode=require").unwrap();
        assert_eq!((rest.as_str(), tls), ("host='db' user='app'", Tls::Require));
        // As libpq reads them: spaces around `=`, quotes, percent-encoded URL keys.
        assert_eq!(split_tls("host=db sslmode = require").unwrap().1, Tls::Require);
        assert_eq!(split_tls("host=db sslmode ='verify-full'").unwrap().1, Tls::Verify);
        let (rest, tls, _) = split_tls("host = db password='it\\'s a \\\\secret' sslmode=disable").unwrap();
        assert_eq!(tls, Tls::Disable);
        let parsed: Config = rest.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"it's a \\secret"[..]));
        assert_eq!(split_tls("postgres://h/db?ssl%6Dode=require").unwrap().1, Tls::Require);
        assert_eq!(
            split_tls("postgres://h/db?sslmode=verify%2Dfull").unwrap().1,
            Tls::Verify
        );
        assert!(split_tls("postgres://h/db?ssl%6Dode=requir").is_err());
        assert!(split_tls("host=db sslmode").is_err());
        assert_eq!(split_tls("postgres://h/db").unwrap().1, Tls::Prefer);
        assert!(split_tls("postgres://h/db?sslmode=maybe").is_err());
    }

    #[test]
    fn descriptions_never_show_the_password() {
        let c: Config = "postgres://app:s3cret@db.example:6543/warehouse".parse().unwrap();
        let d = describe(&c);
        assert_eq!(d, "database `warehouse` on db.example:6543");
        assert!(!d.contains("s3cret"));
    }
}
