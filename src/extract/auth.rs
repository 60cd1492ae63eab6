//! Auth: what each kind of `source.auth` adds to a request (headers, a query parameter,
//! an OAuth2 token fetched and renewed), and what to check when an API refuses it. A new
//! auth kind is an arm of [`Credentials::add`] and [`hint`], with its spec in
//! `spec/compile/auth.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use tokio::sync::Mutex;
use url::Url;

use super::ExtractError;
use crate::resolve::ResolvedAuth;
use crate::spec::pipeline::{ApiKeyLocation, Auth};
use crate::util::{error_chain, head, shown_url, Secrets};

/// The most an OAuth2 token endpoint's answer may hold.
const TOKEN_ANSWER_LIMIT: usize = 1 << 20;

/// What a source's auth adds to requests beyond headers: an API key in the query, or an
/// OAuth2 token fetched when needed.
pub(super) struct Credentials {
    pub query_auth: Option<(String, String)>,
    pub oauth: Option<Arc<OAuth2>>,
}

/// A header name of the spec, checked.
pub(super) fn header_name(name: &str) -> Result<HeaderName, ExtractError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ExtractError::Config(format!("`{name}` is not a valid header name")))
}

impl Credentials {
    /// Add the auth's headers (marked sensitive) to `headers`; what goes elsewhere.
    pub(super) fn add(auth: &ResolvedAuth, headers: &mut HeaderMap) -> Result<Credentials, ExtractError> {
        let sensitive = |v: &str, what: &str| {
            let mut v = HeaderValue::from_str(v)
                .map_err(|_| ExtractError::Config(format!("{what} is not valid in a header")))?;
            v.set_sensitive(true);
            Ok::<_, ExtractError>(v)
        };
        let mut query_auth = None;
        let mut oauth = None;
        match auth {
            ResolvedAuth::None => {}
            ResolvedAuth::OAuth2 {
                grant,
                token_url,
                client_id,
                client_secret,
                refresh_token,
                scopes,
            } => {
                let token_url = Url::parse(token_url).map_err(|e| {
                    ExtractError::Config(format!(
                        "source.auth.token_url `{}` is not a valid URL: {e}",
                        shown_url(token_url)
                    ))
                })?;
                oauth = Some(Arc::new(OAuth2 {
                    grant: *grant,
                    token_url,
                    client_id: client_id.clone(),
                    client_secret: client_secret.clone(),
                    refresh_token: refresh_token.clone(),
                    scopes: scopes.clone(),
                    token: Mutex::new(None),
                }));
            }
            ResolvedAuth::Bearer { token } => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"), "the bearer token")?,
                );
            }
            ResolvedAuth::ApiKey { name, value, location } => match location {
                ApiKeyLocation::Header => {
                    headers.insert(header_name(name)?, sensitive(value, "the API key")?);
                }
                ApiKeyLocation::Query => query_auth = Some((name.clone(), value.clone())),
            },
            ResolvedAuth::Basic { username, password } => {
                let basic = format!("Basic {}", basic_credentials(username, password));
                headers.insert(AUTHORIZATION, sensitive(&basic, "basic credentials")?);
            }
        }
        Ok(Credentials { query_auth, oauth })
    }
}

/// What to check when an API answers 401 or 403: the auth setting and where its secret
/// comes from.
pub(super) fn hint(auth: &Auth) -> String {
    let from = |t: &crate::spec::interp::Interp| match t.vars().as_slice() {
        [] => " (written in the spec)".to_string(),
        vars => format!(
            " from environment variable{} {}",
            if vars.len() == 1 { "" } else { "s" },
            vars.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
        ),
    };
    match auth {
        Auth::None => "the API wants credentials; set `source.auth` (bearer, api_key or basic)".into(),
        Auth::Bearer { token } => format!("check `source.auth`: the bearer token{}", from(token)),
        Auth::ApiKey { name, value, location } => format!(
            "check `source.auth`: the API key `{name}` (in the {}){}",
            match location {
                ApiKeyLocation::Header => "header",
                ApiKeyLocation::Query => "query",
            },
            from(value)
        ),
        Auth::Basic { username, password } => format!(
            "check `source.auth`: basic credentials, user{} and password{}",
            from(username),
            from(password)
        ),
        Auth::OAuth2 {
            client_id,
            client_secret,
            ..
        } => format!(
            "check `source.auth`: the OAuth2 client id{} and secret{}, and the scopes",
            from(client_id),
            from(client_secret)
        ),
    }
}

/// An OAuth 2.0 access token: fetched on first use, renewed before it expires and after
/// a 401. The token endpoint gets the client credentials; the token goes, like every
/// credential, only to the base URL's origin.
pub(super) struct OAuth2 {
    grant: crate::spec::pipeline::OAuth2Grant,
    token_url: Url,
    client_id: String,
    client_secret: String,
    refresh_token: Option<String>,
    scopes: Vec<String>,
    /// The token and when to renew it.
    token: Mutex<Option<(String, Instant)>>,
}

impl OAuth2 {
    /// The `Authorization` header with the current token (see [`OAuth2::token`]).
    pub(super) async fn header(
        &self,
        http: &reqwest::Client,
        secrets: &Secrets,
        renew: bool,
        resource: &str,
        page: u64,
    ) -> Result<HeaderValue, ExtractError> {
        let token = self
            .token(http, secrets, renew)
            .await
            .map_err(|detail| ExtractError::Auth {
                resource: resource.to_string(),
                page,
                detail,
            })?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ExtractError::Config("the OAuth2 access token is not valid in a header".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// The current token, fetched first when there is none, it is due, or `renew`.
    async fn token(&self, http: &reqwest::Client, secrets: &Secrets, renew: bool) -> Result<String, String> {
        let mut held = self.token.lock().await;
        if let (Some((token, due)), false) = (held.as_ref(), renew) {
            if Instant::now() < *due {
                return Ok(token.clone());
            }
        }
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            match (self.grant, &self.refresh_token) {
                (crate::spec::pipeline::OAuth2Grant::RefreshToken, Some(t)) => {
                    form.append_pair("grant_type", "refresh_token")
                        .append_pair("refresh_token", t);
                }
                _ => {
                    form.append_pair("grant_type", "client_credentials");
                }
            }
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            form.finish()
        };
        let basic = basic_credentials(&self.client_id, &self.client_secret);
        let shown = shown_url(self.token_url.as_str());
        let fail = |what: String| secrets.mask(&format!("cannot get an OAuth2 access token from {shown}: {what}"));
        let resp = http
            .post(self.token_url.clone())
            .header(AUTHORIZATION, format!("Basic {basic}"))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| fail(error_chain(&e.without_url())))?;
        let status = resp.status();
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e.without_url())))? {
            if body.len() + chunk.len() > TOKEN_ANSWER_LIMIT {
                return Err(fail(format!(
                    "the answer is larger than {} KiB, which no token answer is; refused",
                    TOKEN_ANSWER_LIMIT >> 10
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(fail(format!(
                "HTTP {}: {}; check `source.auth` (client id, secret{})",
                status.as_u16(),
                head(&body),
                if self.refresh_token.is_some() {
                    ", refresh token"
                } else {
                    ""
                }
            )));
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| fail(format!("the answer is not JSON: {}", head(&body))))?;
        let token = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the answer has no `access_token`".into()))?
            .to_string();
        secrets.add(&token);
        // Renewed a minute early (or at half its life when that is shorter).
        let life = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(3600));
        let due = Instant::now() + life.saturating_sub(Duration::from_secs(60).min(life / 2));
        *held = Some((token.clone(), due));
        Ok(token)
    }
}

/// A basic-auth header's `user:password`, base64 (RFC 4648, padded).
fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_rfc_4648() {
        assert_eq!(
            basic_credentials("Aladdin", "open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_credentials("a", ""), "YTo=");
    }
}
