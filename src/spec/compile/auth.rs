//! `source.auth`: the auth kinds and their secrets. A new kind is one arm here, its
//! model in `spec/model.rs`, and its requests in `extract/auth.rs`.

use super::{check_url, Ctx};
use crate::spec::model::*;
use crate::spec::pipeline::{self as p};

/// `source.auth`.
pub(super) fn compile_auth(cx: &mut Ctx, auth: &RawAuth) -> Option<p::Auth> {
    match auth {
        RawAuth::Keyword(AuthKeyword::None) => Some(p::Auth::None),
        RawAuth::Config(RawAuthConfig::Bearer { token }) => cx
            .secret("source.auth.token", token)
            .map(|token| p::Auth::Bearer { token }),
        RawAuth::Config(RawAuthConfig::ApiKey { name, value, location }) => {
            if name.trim().is_empty() {
                cx.error("source.auth.name", "the API key needs a header or parameter name");
            }
            cx.secret("source.auth.value", value).map(|value| p::Auth::ApiKey {
                name: name.clone(),
                value,
                location: *location,
            })
        }
        RawAuth::Config(RawAuthConfig::Basic { username, password }) => {
            let u = cx.interp("source.auth.username", username);
            let pw = cx.secret("source.auth.password", password);
            u.zip(pw)
                .map(|(username, password)| p::Auth::Basic { username, password })
        }
        RawAuth::Config(RawAuthConfig::Oauth2 {
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
        }) => {
            let oauth = compile_oauth2(
                cx,
                *grant,
                token_url,
                client_id,
                client_secret,
                refresh_token.as_ref(),
                scopes,
            );
            let user = match (grant, username, password) {
                (OAuth2Grant::Password, Some(u), Some(pw)) => cx
                    .interp("source.auth.username", u)
                    .zip(cx.secret("source.auth.password", pw))
                    .map(|(u, pw)| (Some(u), Some(pw))),
                (OAuth2Grant::Password, _, _) => {
                    cx.error("source.auth", "`grant: password` needs `username` and `password`");
                    None
                }
                (_, None, None) => Some((None, None)),
                _ => {
                    cx.error_at_key(
                        "source.auth.username",
                        "`username` and `password` go with `grant: password`",
                    );
                    None
                }
            };
            let mut fields = Vec::new();
            for (k, v) in extra {
                if [
                    "grant_type",
                    "client_id",
                    "client_secret",
                    "refresh_token",
                    "username",
                    "password",
                    "scope",
                ]
                .contains(&k.as_str())
                {
                    cx.error_at_key(
                        &format!("source.auth.extra.{k}"),
                        format!("`{k}` is a field sluice sends itself; give it with its own key"),
                    );
                    continue;
                }
                // Extra fields may hold secrets (an assertion): from the environment, masked.
                if let Some(t) = cx.interp(&format!("source.auth.extra.{k}"), v) {
                    fields.push((k.clone(), t));
                }
            }
            let (mut oauth, (user, pass)) = (oauth?, user?);
            if let p::Auth::OAuth2 {
                username,
                password,
                extra,
                body_format: format,
                ..
            } = &mut oauth
            {
                (*username, *password, *extra) = (user, pass, fields);
                *format = body_format.unwrap_or(BodyFormat::Form);
            }
            Some(oauth)
        }
        RawAuth::Config(RawAuthConfig::Session {
            login,
            token,
            header,
            expires_in,
        }) => compile_session(cx, login, token, header.as_deref(), expires_in.as_deref()),
    }
}

/// `auth: {type: session}`: the login request, the token's path and header, its life.
fn compile_session(
    cx: &mut Ctx,
    login: &RawLogin,
    token: &str,
    header: Option<&str>,
    expires_in: Option<&str>,
) -> Option<p::Auth> {
    let url = cx.interp("source.auth.login.url", &login.url);
    let method = login.method.unwrap_or(HttpMethod::Post);
    if login.body.is_some() && method != HttpMethod::Post {
        cx.error_at_key("source.auth.login.body", "a login `body` needs `method: POST`");
    }
    let mut params = Vec::new();
    for (k, v) in &login.params {
        params.extend(
            cx.interp(&format!("source.auth.login.params.{k}"), &v.0)
                .map(|t| (k.clone(), t)),
        );
    }
    let mut headers = Vec::new();
    for (k, v) in &login.headers {
        headers.extend(
            cx.interp(&format!("source.auth.login.headers.{k}"), v)
                .map(|t| (k.clone(), t)),
        );
    }
    let token = cx.jsonpath("source.auth.token", token);
    let header = header.unwrap_or("Authorization: Bearer {token}");
    let named = match header.split_once(':') {
        Some((n, v)) if v.contains("{token}") && !n.trim().is_empty() && !n.contains(char::is_whitespace) => {
            Some((n.trim().to_string(), v.trim().to_string()))
        }
        _ => {
            cx.error(
                "source.auth.header",
                format!("`{header}`: write `<Header-Name>: <value with {{token}}>`, for example `Authorization: Bearer {{token}}`"),
            );
            None
        }
    };
    let expires = match expires_in {
        None => Some(p::Expiry::Unknown),
        Some(path) if path.starts_with('$') => cx.jsonpath("source.auth.expires_in", path).map(p::Expiry::Path),
        Some(d) => match crate::spec::units::Duration::parse(d) {
            Ok(d) => Some(p::Expiry::After(d.0)),
            Err(e) => {
                cx.error(
                    "source.auth.expires_in",
                    format!("{e}; or a JSONPath such as `$.expires_in` to the seconds in the answer"),
                );
                None
            }
        },
    };
    let (header_name, header_value) = named?;
    Some(p::Auth::Session(Box::new(p::SessionLogin {
        method,
        url: url?,
        body: login.body.clone(),
        body_format: login.body_format.unwrap_or(BodyFormat::Json),
        params,
        headers,
        token: token?,
        header_name,
        header_value,
        expires: expires?,
    })))
}
/// `auth: {type: oauth2}`: the token endpoint, the client and, for `grant: refresh_token`,
/// the refresh token.
fn compile_oauth2(
    cx: &mut Ctx,
    grant: OAuth2Grant,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    refresh_token: Option<&String>,
    scopes: &[String],
) -> Option<p::Auth> {
    let url = cx.interp("source.auth.token_url", token_url);
    if let Some(t) = &url {
        check_url(cx, "source.auth.token_url", t);
    }
    let id = cx.interp("source.auth.client_id", client_id);
    let secret = cx.secret("source.auth.client_secret", client_secret);
    let refresh = match (grant, refresh_token) {
        (OAuth2Grant::RefreshToken, None) => {
            cx.error("source.auth", "`grant: refresh_token` needs `refresh_token`");
            None
        }
        (OAuth2Grant::ClientCredentials | OAuth2Grant::Password, Some(_)) => {
            cx.error_at_key(
                "source.auth.refresh_token",
                "`refresh_token` goes with `grant: refresh_token`",
            );
            None
        }
        (_, Some(t)) => cx.secret("source.auth.refresh_token", t).map(Some),
        (_, None) => Some(None),
    };
    match (url, id, secret, refresh) {
        (Some(token_url), Some(client_id), Some(client_secret), Some(refresh_token)) => Some(p::Auth::OAuth2 {
            grant,
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes: scopes.to_vec(),
            username: None,
            password: None,
            extra: Vec::new(),
            body_format: BodyFormat::Form,
        }),
        _ => None,
    }
}
