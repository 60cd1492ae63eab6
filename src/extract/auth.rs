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
use crate::spec::pipeline::{ApiKeyLocation, Auth, BodyFormat, Expiry, HttpMethod, OAuth2Grant};
use crate::util::{error_chain, head, shown_url, Secrets};

/// The most an OAuth2 token endpoint's answer may hold.
const TOKEN_ANSWER_LIMIT: usize = 1 << 20;

/// What a source's auth adds to requests beyond headers: an API key in the query, or an
/// OAuth2 token fetched when needed.
pub(super) struct Credentials {
    pub query_auth: Option<(String, String)>,
    pub oauth: Option<Arc<TokenAuth>>,
}

/// A header name of the spec, checked.
pub(super) fn header_name(name: &str) -> Result<HeaderName, ExtractError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ExtractError::Config(format!("`{name}` is not a valid header name")))
}

impl Credentials {
    /// Add the auth's headers (marked sensitive) to `headers`; what goes elsewhere.
    pub(super) fn add(auth: &ResolvedAuth, base: &Url, headers: &mut HeaderMap) -> Result<Credentials, ExtractError> {
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
                username,
                password,
                extra,
                body_format,
            } => {
                let token_url = Url::parse(token_url).map_err(|e| {
                    ExtractError::Config(format!(
                        "source.auth.token_url `{}` is not a valid URL: {e}",
                        shown_url(token_url)
                    ))
                })?;
                let mut fields = vec![(
                    "grant_type".to_string(),
                    match grant {
                        OAuth2Grant::ClientCredentials => "client_credentials",
                        OAuth2Grant::RefreshToken => "refresh_token",
                        OAuth2Grant::Password => "password",
                    }
                    .to_string(),
                )];
                let mut add = |k: &str, v: &Option<String>| {
                    if let Some(v) = v {
                        fields.push((k.to_string(), v.clone()));
                    }
                };
                add("refresh_token", refresh_token);
                add("username", username);
                add("password", password);
                add("scope", &Some(scopes.join(" ")).filter(|s| !s.is_empty()));
                fields.extend(extra.iter().cloned());
                oauth = Some(Arc::new(TokenAuth {
                    how: How::OAuth2 {
                        token_url,
                        basic: basic_credentials(client_id, client_secret),
                        fields,
                        body_format: *body_format,
                        refresh: refresh_token.is_some(),
                    },
                    header_name: AUTHORIZATION,
                    header_value: "Bearer {token}".into(),
                    token: Mutex::new(None),
                }));
            }
            ResolvedAuth::Session(login) => {
                // A login path is below the base URL; an absolute URL may be anywhere.
                let url = match Url::parse(&login.url) {
                    Err(url::ParseError::RelativeUrlWithoutBase) => {
                        Url::parse(&crate::util::below(base.as_str(), &login.url))
                    }
                    other => other,
                }
                .map_err(|e| {
                    ExtractError::Config(format!(
                        "source.auth.login.url `{}` is not a valid URL: {e}",
                        shown_url(&login.url)
                    ))
                })?;
                oauth = Some(Arc::new(TokenAuth {
                    header_name: header_name(&login.header_name)?,
                    header_value: login.header_value.clone(),
                    how: How::Login {
                        url,
                        login: login.clone(),
                    },
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
        Auth::None => "the API wants credentials; set `source.auth` (bearer, api_key, basic, oauth2 or session)".into(),
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
        Auth::Session(login) => format!(
            "check `source.auth`: the session login at {}{} and the credentials in its body",
            shown_url(login.url.raw()),
            from(&login.url)
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

/// A token fetched before the API's requests: an OAuth 2.0 access token, or a session
/// login's. Fetched on first use, renewed before it expires and after a 401. The token
/// endpoint gets the client credentials (or the login its body); the token goes, like
/// every credential, only to the base URL's origin.
pub(super) struct TokenAuth {
    how: How,
    header_name: HeaderName,
    /// The header's value, with `{token}`.
    header_value: String,
    /// The token, when to renew it (`None`: when the API answers 401), and its generation
    /// (how many were fetched before it).
    token: Mutex<Option<(String, Option<Instant>, u64)>>,
}

/// How the token is fetched.
enum How {
    OAuth2 {
        token_url: Url,
        /// `client_id:client_secret`, base64.
        basic: String,
        /// The token request's fields, `grant_type` first.
        fields: Vec<(String, String)>,
        body_format: BodyFormat,
        refresh: bool,
    },
    Login {
        url: Url,
        login: Box<crate::resolve::ResolvedLogin>,
    },
}

/// `fields` as a form or a JSON object, with its content type.
fn encode(fields: &[(String, String)], format: BodyFormat) -> (String, &'static str) {
    match format {
        BodyFormat::Form => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                form.append_pair(k, v);
            }
            (form.finish(), "application/x-www-form-urlencoded")
        }
        BodyFormat::Json => {
            let m: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            (serde_json::Value::Object(m).to_string(), "application/json")
        }
    }
}

/// A token or login request, replayed: with the headers that tell the replay server what
/// it was for.
fn via(
    tap: Option<&crate::replay::Tap>,
    mut request: reqwest::RequestBuilder,
    u: &url::Url,
) -> reqwest::RequestBuilder {
    for (k, v) in tap
        .and_then(|t| t.route(u, "(auth)", 0))
        .into_iter()
        .flat_map(|(_, h)| h)
    {
        request = request.header(k, v);
    }
    request
}

/// Keep a token or login exchange, when recording.
fn keep(
    tap: Option<&crate::replay::Tap>,
    (method, url, sent): &(&str, url::Url, Option<String>),
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) {
    if let Some(tap) = tap {
        tap.keep(
            "(auth)",
            0,
            method,
            url,
            sent.as_deref(),
            status.as_u16(),
            headers,
            body,
        );
    }
}

/// Where a token or login request goes: the replay server, when replayed.
fn send_to(tap: Option<&crate::replay::Tap>, u: &url::Url) -> url::Url {
    tap.and_then(|t| t.route(u, "(auth)", 0))
        .map_or_else(|| u.clone(), |(to, _)| to)
}

impl TokenAuth {
    /// The header with the current token (see [`TokenAuth::token`]).
    pub(super) async fn header(
        &self,
        http: &reqwest::Client,
        secrets: &Secrets,
        tap: Option<&crate::replay::Tap>,
        renew: Option<u64>,
        resource: &str,
        page: u64,
    ) -> Result<(HeaderName, HeaderValue, u64), ExtractError> {
        let (token, generation) = self
            .token(http, secrets, tap, renew)
            .await
            .map_err(|detail| ExtractError::Auth {
                resource: resource.to_string(),
                page,
                detail,
            })?;
        let mut v = HeaderValue::from_str(&self.header_value.replace("{token}", &token))
            .map_err(|_| ExtractError::Config("the access token is not valid in a header".into()))?;
        v.set_sensitive(true);
        Ok((self.header_name.clone(), v, generation))
    }

    /// The current token and its generation, fetched first when there is none, it is
    /// due, or it is the one `renew` names (requests refused at once renew it once).
    async fn token(
        &self,
        http: &reqwest::Client,
        secrets: &Secrets,
        tap: Option<&crate::replay::Tap>,
        renew: Option<u64>,
    ) -> Result<(String, u64), String> {
        let mut held = self.token.lock().await;
        let generation = held.as_ref().map_or(0, |(_, _, g)| g + 1);
        if let Some((token, due, g)) = held.as_ref() {
            if renew != Some(*g) && due.is_none_or(|due| Instant::now() < due) {
                return Ok((token.clone(), *g));
            }
        }
        let (via, send_to) = (|r, u: &url::Url| via(tap, r, u), |u: &url::Url| send_to(tap, u));
        let (request, shown, what, sent) = match &self.how {
            How::OAuth2 {
                token_url,
                basic,
                fields,
                body_format,
                ..
            } => {
                let (body, content_type) = encode(fields, *body_format);
                let request = via(http.post(send_to(token_url)), token_url)
                    .header(AUTHORIZATION, format!("Basic {basic}"))
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body.clone());
                (
                    request,
                    shown_url(token_url.as_str()),
                    "get an OAuth2 access token from",
                    ("POST", token_url.clone(), Some(body)),
                )
            }
            How::Login { url, login } => {
                let mut target = url.clone();
                for (k, v) in &login.params {
                    target.query_pairs_mut().append_pair(k, v);
                }
                let mut request = match login.method {
                    HttpMethod::Get => http.get(send_to(&target)),
                    HttpMethod::Post => http.post(send_to(&target)),
                };
                request = via(request, &target);
                let mut sent = None;
                for (k, v) in &login.headers {
                    request = request.header(header_name(k).map_err(|e| e.to_string())?, v);
                }
                if let Some(body) = &login.body {
                    let (text, content_type) = match (login.body_format, body) {
                        (BodyFormat::Form, serde_json::Value::Object(m)) => {
                            let fields: Vec<(String, String)> = m
                                .iter()
                                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                                .collect();
                            encode(&fields, BodyFormat::Form)
                        }
                        _ => (body.to_string(), "application/json"),
                    };
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, content_type)
                        .body(text.clone());
                    sent = Some(text);
                }
                let method = match login.method {
                    HttpMethod::Get => "GET",
                    HttpMethod::Post => "POST",
                };
                (request, shown_url(url.as_str()), "log in at", (method, target, sent))
            }
        };
        let fail = |detail: String| secrets.mask(&format!("cannot {what} {shown}: {detail}"));
        let resp = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(error_chain(&e.without_url())))?;
        let status = resp.status();
        let headers = resp.headers().clone();
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
        keep(tap, &sent, status, &headers, &body);
        if !status.is_success() {
            let check = match &self.how {
                How::OAuth2 { refresh: true, .. } => "check `source.auth` (client id, secret, refresh token)",
                How::OAuth2 { .. } => "check `source.auth` (client id, secret)",
                How::Login { .. } => "check `source.auth.login` (its URL, body and the credentials in it)",
            };
            return Err(fail(format!("HTTP {}: {}; {check}", status.as_u16(), head(&body))));
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| fail(format!("the answer is not JSON: {}", head(&body))))?;
        let (found, life) = match &self.how {
            How::OAuth2 { .. } => (
                answer.get("access_token").cloned(),
                Some(Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(3600))),
            ),
            How::Login { login, .. } => (
                login.token.first(&answer).cloned(),
                match &login.expires {
                    Expiry::Unknown => None,
                    Expiry::After(d) => Some(*d),
                    Expiry::Path(p) => p
                        .first(&answer)
                        .and_then(crate::extract::paginate::as_count)
                        .map(Duration::from_secs),
                },
            ),
        };
        let token = match found {
            Some(serde_json::Value::String(t)) if !t.is_empty() => t,
            _ => {
                let path = match &self.how {
                    How::OAuth2 { .. } => "`access_token`".to_string(),
                    How::Login { login, .. } => format!("`{}`", login.token.as_str()),
                };
                // The answer's keys only: its values may be secrets.
                let keys = answer
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                return Err(fail(format!("the answer has no token at {path} (its keys: {keys})")));
            }
        };
        secrets.add(&token);
        // Renewed a minute early (or at half its life when that is shorter).
        let due = life.map(|life| Instant::now() + life.saturating_sub(Duration::from_secs(60).min(life / 2)));
        *held = Some((token.clone(), due, generation));
        Ok((token, generation))
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
