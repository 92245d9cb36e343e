//! The REAPI ActionCache: action digest → ActionResult, per instance name.
//!
//! An entry is served only while everything it references is in the CAS
//! (see [`super::completeness`]); one found incomplete is deleted and
//! reported as NOT_FOUND, so the client re-runs the action instead of failing
//! to download its outputs. Updates are refused with FAILED_PRECONDITION
//! while any referenced blob is missing, so an entry is complete when stored.

use buildfleet_proto::convert as wire;
use std::sync::Arc;

use buildfleet_proto::reapi::action_cache_server::ActionCache;
use buildfleet_proto::reapi::{ActionResult, GetActionResultRequest, UpdateActionResultRequest};
use bytes::Bytes;
use prost::Message;
use tonic::{Request, Response, Status};

use super::completeness::{describe, missing, References};
use super::instance::instance_key;
use super::{on_store, request_function};
use crate::error::CacheError;
use crate::store::{BlobStore, MetaTable};
use buildfleet_model::digest::{Digest, DigestError, DigestFunction};
use buildfleet_model::CacheScope;
use buildfleet_trust::{Caller, Role};

pub(crate) struct ActionCacheService {
    store: Arc<dyn BlobStore>,
    metrics: Arc<super::metrics::CacheMetrics>,
}

impl ActionCacheService {
    pub(crate) fn new(
        store: Arc<dyn BlobStore>,
        metrics: Arc<super::metrics::CacheMetrics>,
    ) -> Self {
        ActionCacheService { store, metrics }
    }
}

fn action_digest(
    wire: Option<&buildfleet_proto::reapi::Digest>,
    function: DigestFunction,
) -> Result<Digest, CacheError> {
    let wire = wire.ok_or(DigestError::Missing)?;
    Ok(wire::from_reapi(wire, function)?)
}

/// Everything `result` needs from the CAS. Output symlinks need nothing;
/// inlined contents need nothing beyond their digests being valid.
fn references(result: &ActionResult, function: DigestFunction) -> Result<References, CacheError> {
    let parse = |d: &buildfleet_proto::reapi::Digest| wire::from_reapi(d, function);
    let mut refs = References::default();
    for file in &result.output_files {
        let wire = file.digest.as_ref().ok_or_else(|| {
            CacheError::InvalidRequest(format!("output file {:?} has no digest", file.path))
        })?;
        refs.blobs.push(parse(wire)?);
    }
    for d in result.stdout_digest.iter().chain(&result.stderr_digest) {
        refs.blobs.push(parse(d)?);
    }
    for dir in &result.output_directories {
        match (&dir.tree_digest, &dir.root_directory_digest) {
            (Some(tree), _) => refs.trees.push(parse(tree)?),
            (None, Some(root)) => refs.directories.push(parse(root)?),
            (None, None) => {
                return Err(CacheError::InvalidRequest(format!(
                    "output directory {:?} has neither a tree nor a root directory digest",
                    dir.path
                )))
            }
        }
    }
    Ok(refs)
}

#[tonic::async_trait]
impl ActionCache for ActionCacheService {
    async fn get_action_result(
        &self,
        request: Request<GetActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let instance = request.get_ref().instance_name.clone();
        let answer = self.lookup(request).await;
        match &answer {
            Ok(_) => self.metrics.action_lookup(&instance, true),
            Err(status) if status.code() == tonic::Code::NotFound => {
                self.metrics.action_lookup(&instance, false)
            }
            Err(_) => {}
        }
        answer
    }

    async fn update_action_result(
        &self,
        request: Request<UpdateActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        // The trust scopes are runners' alone: a client allowed to write
        // (Bazel) writes its own instances, never a scope a run reads.
        if CacheScope::is_scope(&request.instance_name)
            && !matches!(caller.role, Role::Runner | Role::Admin)
        {
            return Err(CacheError::Forbidden(format!(
                "`{}` ({} token) may not write the cache scope `{}`: scopes are written by runners only",
                caller.name, caller.role, request.instance_name
            ))
            .into());
        }
        let function = request_function(request.digest_function)?;
        let action = action_digest(request.action_digest.as_ref(), function)?;
        let mut result = request
            .action_result
            .ok_or_else(|| CacheError::InvalidRequest("no action_result to store".into()))?;
        // Who wrote it is the token's name, whatever the result claims.
        if let Some(writer) = caller.owner() {
            result
                .execution_metadata
                .get_or_insert_with(Default::default)
                .worker = writer.to_owned();
        }
        let refs = references(&result, function)?;
        let gone = on_store(&self.store, move |s| Ok(missing(s, &refs))).await??;
        if !gone.is_empty() {
            tracing::info!(
                %action,
                instance = %request.instance_name,
                missing = gone.len(),
                blobs = %describe(&gone),
                "refused action cache update referencing missing blobs"
            );
            return Err(CacheError::MissingBlobs(gone).into());
        }
        let key = instance_key(&request.instance_name, &action.key_bytes());
        let value = Bytes::from(result.encode_to_vec());
        on_store(&self.store, move |s| {
            s.meta_put(MetaTable::ActionCache, &key, value)
        })
        .await?;
        Ok(Response::new(result))
    }
}

impl ActionCacheService {
    /// GetActionResult itself; the trait method counts its answer.
    async fn lookup(
        &self,
        request: Request<GetActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let request = request.into_inner();
        let function = request_function(request.digest_function)?;
        let action = action_digest(request.action_digest.as_ref(), function)?;
        let instance = request.instance_name;
        let key = instance_key(&instance, &action.key_bytes());
        let not_found = |reason: String| CacheError::ActionResultNotFound { action, reason };

        let lookup_key = key.clone();
        let Some(bytes) = on_store(&self.store, move |s| {
            s.meta_get(MetaTable::ActionCache, &lookup_key)
        })
        .await?
        else {
            return Err(not_found("no entry".into()).into());
        };
        let checked = ActionResult::decode(bytes.as_ref())
            .map_err(|err| {
                CacheError::InvalidRequest(format!("stored entry does not decode: {err}"))
            })
            .and_then(|result| Ok((references(&result, function)?, result)));
        let reason = match checked {
            Ok((refs, result)) => {
                match on_store(&self.store, move |s| Ok(missing(s, &refs))).await? {
                    Ok(gone) if gone.is_empty() => return Ok(Response::new(result)),
                    Ok(gone) => {
                        tracing::warn!(
                            %action,
                            instance = %instance,
                            missing = gone.len(),
                            blobs = %describe(&gone),
                            "action cache entry references missing blobs; deleting it"
                        );
                        format!(
                            "{} referenced blobs are missing: {}",
                            gone.len(),
                            describe(&gone)
                        )
                    }
                    Err(err @ CacheError::Store(_)) => return Err(err.into()),
                    Err(err) => {
                        tracing::error!(%action, instance = %instance, %err, "action cache entry references undecodable trees; deleting it");
                        err.to_string()
                    }
                }
            }
            Err(err) => {
                tracing::error!(%action, instance = %instance, %err, "unusable action cache entry; deleting it");
                err.to_string()
            }
        };
        // Only if unchanged: a concurrent update may have stored a complete
        // replacement since we read it.
        on_store(&self.store, move |s| {
            if s.meta_get(MetaTable::ActionCache, &key)? == Some(bytes) {
                s.meta_delete(MetaTable::ActionCache, &key)?;
            }
            Ok(())
        })
        .await?;
        Err(not_found(reason).into())
    }
}
