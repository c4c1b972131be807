//! Authentication: Argon2id passwords, server-side sessions in cookies with CSRF tokens, bearer API tokens.
//!
//! Neither session tokens nor API tokens are stored: only their SHA-256, so a copy of the database does not let
//! anyone sign in.

use crate::error::{AppError, AppResult};
use crate::AppState;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use base64::Engine;
use caravan_domain::{Actor, Role, User};
use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const SESSION_COOKIE: &str = "caravan_session";
pub const LANG_COOKIE: &str = "caravan_lang";
pub const SESSION_HOURS: i64 = 8;

pub fn hash_password(password: &str) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AppError::internal)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random token (256 bits, URL-safe base64).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How the request was authenticated.
#[derive(Clone, Debug)]
pub enum Via {
    Session { token_hash: String, csrf: String },
    ApiToken,
}

/// The signed-in user of a request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: User,
    pub via: Via,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::from(&self.user)
    }
    pub fn role(&self) -> Role {
        self.user.role
    }
    /// Refuse unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> AppResult<()> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(AppError::forbidden())
        }
    }
    /// Session-authenticated writes must carry the session's CSRF token; bearer tokens carry no ambient authority.
    pub fn check_csrf(&self, presented: Option<&str>) -> AppResult<()> {
        match &self.via {
            Via::ApiToken => Ok(()),
            Via::Session { csrf, .. } => {
                if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), csrf.as_bytes())) {
                    Ok(())
                } else {
                    Err(AppError::new(
                        StatusCode::FORBIDDEN,
                        "error-csrf",
                        "missing or wrong CSRF token; reload the page and try again",
                    ))
                }
            }
        }
    }
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::ApiToken => "",
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Recently authenticated tokens (by SHA-256), so that a burst of API calls does not look the token up in the
/// database each time. Entries live `CACHE_TTL`; logging out removes the session's entry and revoking a token or
/// changing a user empties the cache, so in one process a revocation takes effect at once. With several processes on
/// one PostgreSQL database, another process may honour a revoked token for up to `CACHE_TTL`.
#[derive(Debug, Default)]
pub struct AuthCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedAuth>>,
}

#[derive(Clone, Debug)]
struct CachedAuth {
    user: User,
    /// `None` for an API token; the session's CSRF token and expiry otherwise.
    session: Option<(String, chrono::DateTime<Utc>)>,
    fetched: std::time::Instant,
}

pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

impl AuthCache {
    fn get(&self, hash: &str) -> Option<CachedAuth> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|e| e.fetched.elapsed() < CACHE_TTL)
            .cloned()
    }
    fn put(&self, hash: String, entry: CachedAuth) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, e| e.fetched.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(hash, entry);
    }
    /// Forget one token (a session that logs out).
    pub fn forget(&self, hash: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(hash);
    }
    /// Forget everything (a token revoked, a user changed).
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.clear();
    }
}

/// Authenticate from request headers: a bearer token, or the session cookie.
pub async fn authenticate(
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> AppResult<Principal> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth.to_str().map_err(|_| AppError::unauthenticated())?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(AppError::unauthenticated)?;
        let hash = token_hash(token.trim());
        let user = match state.auth_cache().get(&hash) {
            Some(CachedAuth {
                user,
                session: None,
                ..
            }) => user,
            _ => {
                let user = state
                    .store()
                    .user_for_api_token(&hash)
                    .await
                    .map_err(|_| AppError::unauthenticated())?;
                state.auth_cache().put(
                    hash,
                    CachedAuth {
                        user: user.clone(),
                        session: None,
                        fetched: std::time::Instant::now(),
                    },
                );
                user
            }
        };
        if !user.active {
            return Err(AppError::unauthenticated());
        }
        return Ok(Principal {
            user,
            via: Via::ApiToken,
        });
    }
    let jar = CookieJar::from_headers(headers);
    let token = jar
        .get(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(AppError::unauthenticated)?;
    let hash = token_hash(&token);
    let (user, (csrf, expires_at)) = match state.auth_cache().get(&hash) {
        Some(CachedAuth {
            user,
            session: Some(s),
            ..
        }) => (user, s),
        _ => {
            let session = state
                .store()
                .get_session(&hash)
                .await
                .map_err(|_| AppError::unauthenticated())?;
            let s = (session.csrf_token, session.expires_at);
            state.auth_cache().put(
                hash.clone(),
                CachedAuth {
                    user: session.user.clone(),
                    session: Some(s.clone()),
                    fetched: std::time::Instant::now(),
                },
            );
            (session.user, s)
        }
    };
    if expires_at <= Utc::now() || !user.active {
        return Err(AppError::unauthenticated());
    }
    Ok(Principal {
        user,
        via: Via::Session {
            token_hash: hash,
            csrf,
        },
    })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(&parts.headers, state).await
    }
}

/// The principal of a UI page: an unauthenticated browser is sent to the sign-in page instead of a 401.
#[derive(Clone, Debug)]
pub struct UiPrincipal(pub Principal);

pub struct ToLogin;

impl IntoResponse for ToLogin {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<AppState> for UiPrincipal {
    type Rejection = ToLogin;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(&parts.headers, state)
            .await
            .map(UiPrincipal)
            .map_err(|_| ToLogin)
    }
}

/// Start a session for `user`; returns the cookie to set.
pub async fn start_session(state: &AppState, user: &User) -> AppResult<Cookie<'static>> {
    let token = random_token();
    let csrf = random_token();
    let expires = Utc::now() + Duration::hours(SESSION_HOURS);
    state
        .store()
        .create_session(&token_hash(&token), user.id, &csrf, expires)
        .await?;
    let mut cookie = Cookie::new(SESSION_COOKIE, token);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/");
    cookie.set_secure(state.config().secure_cookies);
    // A browser-session cookie: it is gone when the browser closes; the server ends it after SESSION_HOURS anyway.
    Ok(cookie)
}

pub fn clear_session_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::new(SESSION_COOKIE, "");
    cookie.set_path("/");
    cookie.make_removal();
    cookie
}
