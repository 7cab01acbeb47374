//! Who is looking: the console's login form, its session cookie and the guard every other path
//! sits behind.
//!
//! The users, passwords and grants are Flight SQL's (`[users.*]` in tidemark.toml). A login
//! sets `tidemark_console`, a token signed with a secret drawn at start and carrying its expiry
//! (the Flight handshake's token format), as an `HttpOnly`, `SameSite=Strict` cookie. A request
//! without a genuine, unexpired cookie is sent to `/login`, assets included. The two requests
//! that change anything (logging in and out) must come from the console's own pages: their
//! `Origin` (or `Referer`) must name the host they were sent to, which a cross-site form cannot
//! forge; with `SameSite=Strict` a cross-site request carries no cookie either.

use std::sync::Arc;

use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{escape, query_value, STYLE};
use super::Console;

/// The session cookie's name.
pub const COOKIE: &str = "tidemark_console";

/// The token in the request's session cookie, if it has one.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether a state-changing request came from a page of this console: its `Origin` (or,
/// without one, its `Referer`) has the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok());
    from.is_some_and(|url| {
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        authority == host
    })
}

/// The login page, with an optional message.
fn login_page(next: &str, message: Option<&str>) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · tidemark</title>\
         <style>{STYLE}</style></head><body>\
         <form class=\"login\" method=\"post\" action=\"/login\">\
         <h1>tidemark</h1>{message}\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>User<input name=\"user\" autocomplete=\"username\" autofocus></label>\
         <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button type=\"submit\">Log in</button></form></body></html>",
        message = message
            .map(|m| format!("<p class=\"bad\">{}</p>", escape(m)))
            .unwrap_or_default(),
        next = escape(next),
    ))
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    why: Option<String>,
}

/// Where to go after logging in: a path of this console, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") => path.to_string(),
        _ => "/".to_string(),
    }
}

pub async fn login_form(Query(query): Query<LoginQuery>) -> Html<String> {
    let message = match query.why.as_deref() {
        Some("expired") => Some("Your session has expired; log in again."),
        Some("invalid") => Some("That session is not valid here; log in."),
        Some("logged-out") => Some("Logged out."),
        _ => None,
    };
    login_page(&safe_next(query.next.as_deref()), message)
}

#[derive(Debug, Deserialize)]
pub struct Login {
    user: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a login must come from the console's own login page",
        )
            .into_response();
    }
    let next = safe_next(form.next.as_deref());
    // Password checks are slow on purpose (argon2): off the async workers.
    let auth = Arc::clone(&console.auth);
    let (name, password) = (form.user.clone(), form.password);
    let checked = tokio::task::spawn_blocking(move || auth.login(&name, &password)).await;
    match checked {
        Ok(Ok(user)) => {
            let token = console.auth.issue(&user);
            tracing::info!(user = %user.name, "console login");
            (
                [(
                    header::SET_COOKIE,
                    format!(
                        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                        console.session_ttl.as_secs()
                    ),
                )],
                Redirect::to(&next),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            tracing::info!(user = %form.user, "console login refused");
            (
                StatusCode::UNAUTHORIZED,
                login_page(&next, Some(&e.to_string())),
            )
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "login check failed").into_response(),
    }
}

pub async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "a logout must come from the console's own pages",
        )
            .into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login?why=logged-out"),
    )
        .into_response()
}

/// The guard: the signed-in user goes into the request; anyone else to the login form.
pub async fn require_login(
    State(console): State<Arc<Console>>,
    mut request: Request,
    next: Next,
) -> Response {
    let wanted = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let to_login = |why: Option<&str>| {
        Redirect::to(&format!(
            "/login?next={}{}",
            query_value(&wanted),
            why.map(|w| format!("&why={w}")).unwrap_or_default()
        ))
        .into_response()
    };
    let Some(token) = cookie_token(request.headers()) else {
        return to_login(None);
    };
    match console.auth.verify(token) {
        Ok(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Err(sql::flight::auth::AuthError::Expired) => to_login(Some("expired")),
        Err(_) => to_login(Some("invalid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let ok = headers(&[
            (header::HOST, "127.0.0.1:8480"),
            (header::ORIGIN, "http://127.0.0.1:8480"),
        ]);
        assert!(same_origin(&ok));
        let other = headers(&[
            (header::HOST, "127.0.0.1:8480"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(!same_origin(&other));
        let referer = headers(&[
            (header::HOST, "127.0.0.1:8480"),
            (header::REFERER, "http://127.0.0.1:8480/login"),
        ]);
        assert!(same_origin(&referer));
        assert!(!same_origin(&headers(&[(header::HOST, "127.0.0.1:8480")])));
    }

    #[test]
    fn next_stays_on_the_console_and_the_cookie_is_found() {
        assert_eq!(
            safe_next(Some("/day?date=2026-11-01")),
            "/day?date=2026-11-01"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        let h = headers(&[(header::COOKIE, "a=1; tidemark_console=tok.en; b=2")]);
        assert_eq!(cookie_token(&h), Some("tok.en"));
    }
}
