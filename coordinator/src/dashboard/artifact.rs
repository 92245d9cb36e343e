//! `/runs/ID/artifacts/HASH/SIZE`: one file a step of the run declared
//! as an output, read from the cache (verified against its digest on the
//! way) and sent as a download. Only a digest the run recorded is served:
//! the route is not a window onto the whole cache.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use buildfleet_model::{Artifact, ArtifactKind, Digest};

use super::auth::{Refusal, GET};
use super::Shared;

/// Larger files are left to `buildfleet artifacts`, which streams to disk.
const MAX_DOWNLOAD: u64 = 512 << 20;

pub async fn download(
    State(d): Shared,
    Path((id, hash, size)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Refusal> {
    let caller = d.admit(&headers, GET, &uri)?;
    d.hub.check_run(&caller, &id, "read")?;
    let not_found = || {
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!("run {id} has no file artifact {hash}/{size}"),
        )
    };
    let digest = Digest::parse_parts(&hash, &size).map_err(|_| not_found())?;
    let artifact: Option<Artifact> = d.hub.read(|s| {
        s.run(&id).map(|r| {
            r.status()
                .steps
                .iter()
                .flat_map(|st| &st.shards)
                .flat_map(|sh| &sh.outputs)
                .find(|a| a.digest == digest && matches!(a.kind, ArtifactKind::File { .. }))
                .cloned()
        })
    })?;
    let artifact = artifact.ok_or_else(not_found)?;
    let whole = format!("buildfleet artifacts {id} --out DIR");
    if digest.size_bytes > MAX_DOWNLOAD {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} is {} bytes, more than the dashboard sends; use `{whole}`",
                artifact.path, digest.size_bytes
            ),
        ));
    }
    let Some(cache) = &d.hub.config.artifact_cache else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this coordinator was not given the cache (--cache URL); use `{whole}`"),
        ));
    };
    let unavailable = |e: &dyn std::fmt::Display| {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!("{} could not be read from the cache: {e}", artifact.path),
        )
    };
    let cas = buildfleet_cache::CasClient::connect_with(&cache.url, &cache.trust)
        .await
        .map_err(|e| unavailable(&e))?;
    let bytes = cas.read_blob(&digest).await.map_err(|e| unavailable(&e))?;
    let name: String = artifact
        .path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut response = Body::from(bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
