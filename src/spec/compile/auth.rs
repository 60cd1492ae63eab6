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
        }) => compile_oauth2(
            cx,
            *grant,
            token_url,
            client_id,
            client_secret,
            refresh_token.as_ref(),
            scopes,
        ),
    }
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
        (OAuth2Grant::ClientCredentials, Some(_)) => {
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
        }),
        _ => None,
    }
}
