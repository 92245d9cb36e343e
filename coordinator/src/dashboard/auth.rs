//! Who is looking: the token from the dashboard's cookie (set by the
//! login page) or an `Authorization: Bearer` header, admitted by the same
//! guard and access table as the gRPC API, as the RPC a page stands for.
//! The cookie is HttpOnly and SameSite=Strict, and a form post from
//! another site is refused, so another page cannot press a button for you.

use axum::extract::{Form, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use buildfleet_trust::Caller;

use super::html::{escape, page};
use super::{Dashboard, Shared};
use crate::error::CoordinatorError;

const COOKIE: &str = "buildfleet_token";

/// The RPCs pages stand for.
pub const LIST_RUNS: &str = "/buildfleet.v1.Pipelines/ListRuns";
pub const GET: &str = "/buildfleet.v1.Pipelines/Get";
pub const WATCH: &str = "/buildfleet.v1.Pipelines/Watch";
pub const DECIDE: &str = "/buildfleet.v1.Pipelines/Decide";
pub const LIST_RUNNERS: &str = "/buildfleet.v1.Pipelines/ListRunners";

/// A page not shown, and why; a missing or unknown token sends a browser
/// to the login page.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
    login_then: Option<String>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: String) -> Refusal {
        Refusal {
            status,
            message,
            login_then: None,
        }
    }

    /// Why, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<CoordinatorError> for Refusal {
    /// Through the one gRPC mapping, so a page fails as the API would.
    fn from(e: CoordinatorError) -> Refusal {
        let status = tonic::Status::from(e);
        Refusal::new(http_status(status.code()), status.message().to_owned())
    }
}

fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if let Some(next) = self.login_then {
            return Redirect::to(&format!("/login?next={}", super::html::segment(&next)))
                .into_response();
        }
        let body = page(
            self.status.canonical_reason().unwrap_or("refused"),
            "",
            &format!(
                r#"<h1>{}</h1><p class="err">{}</p><p><a href="/">runs</a> · <a href="/login">log in with another token</a></p>"#,
                self.status,
                escape(&self.message)
            ),
            "",
        );
        (self.status, body).into_response()
    }
}

impl Dashboard {
    /// The caller, admitted as `rpc`; `uri` is where to return after a login.
    pub fn admit(&self, headers: &HeaderMap, rpc: &str, uri: &Uri) -> Result<Caller, Refusal> {
        let mut with_token = HeaderMap::new();
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            with_token.insert(header::AUTHORIZATION, v.clone());
        } else if let Some(token) = cookie(headers) {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                with_token.insert(header::AUTHORIZATION, v);
            }
        }
        self.guard.admit(rpc, &with_token).map_err(|s| {
            let mut r = Refusal::new(http_status(s.code()), s.message().to_owned());
            if s.code() == tonic::Code::Unauthenticated {
                r.login_then = Some(uri.path().to_owned());
            }
            r
        })
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_owned)
}

/// A form post from a page of another site is refused (the cookie is
/// SameSite=Strict already; this also covers a fleet without tokens).
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Err(cross_site());
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(o), Some(h)) if o.split_once("://").map(|(_, rest)| rest) != Some(h) => {
            Err(cross_site())
        }
        _ => Ok(()),
    }
}

fn cross_site() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "refused: this form was posted from another site".into(),
    )
}

#[derive(serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path on this server: never `//evil.example` or a full URL.
fn local(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

pub async fn login_page(Query(q): Query<Next>) -> Html<String> {
    login_form(local(q.next.as_deref()), "")
}

fn login_form(next: &str, error: &str) -> Html<String> {
    let error = match error {
        "" => String::new(),
        e => format!(r#"<p class="err">{}</p>"#, escape(e)),
    };
    page(
        "log in",
        "",
        &format!(
            r#"<h1>Log in</h1><div class="box"><p>Paste a client or admin token (what <code>buildfleet token new</code> wrote). It is kept in an HttpOnly cookie for this site only.</p>{error}<form id="login" method="post" action="/login"><input type="hidden" name="next" value="{}"><input type="password" name="token" autocomplete="off" required placeholder="token"> <button type="submit">Log in</button></form></div>"#,
            escape(next)
        ),
        "",
    )
}

#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
    next: Option<String>,
}

pub async fn login(
    axum::extract::State(d): Shared,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r.into_response();
    }
    let next = local(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    let mut with_token = HeaderMap::new();
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return login_form(&next, "that is not a token").into_response();
    };
    with_token.insert(header::AUTHORIZATION, bearer);
    if let Err(s) = d.guard.admit(LIST_RUNS, &with_token) {
        return (StatusCode::UNAUTHORIZED, login_form(&next, s.message())).into_response();
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub async fn logout(headers: HeaderMap) -> Response {
    if let Err(r) = same_origin(&headers) {
        return r.into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("buildfleet_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_its_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; buildfleet_token=abc; b=2"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("buildfleet_tokenx=1"),
        );
        assert_eq!(cookie(&h), None);
    }

    #[test]
    fn only_local_paths_are_returned_to_after_a_login() {
        assert_eq!(local(Some("/runs/x")), "/runs/x");
        for evil in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil",
            "runs",
        ] {
            assert_eq!(local(Some(evil)), "/", "{evil}");
        }
    }

    #[test]
    fn posts_from_another_site_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9000"));
        assert!(same_origin(&h).is_ok(), "no origin: a script with a token");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9000"),
        );
        assert!(same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(same_origin(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&h).is_err());
    }
}
