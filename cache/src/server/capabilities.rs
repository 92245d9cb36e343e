//! Capabilities: tells REAPI clients which digest functions we serve, that
//! they may update the action cache, and how big a batch may be, so they
//! never send requests we would refuse.

use buildfleet_proto::reapi::capabilities_server::Capabilities;
use buildfleet_proto::reapi::{
    symlink_absolute_path_strategy, ActionCacheUpdateCapabilities, CacheCapabilities,
    GetCapabilitiesRequest, ServerCapabilities,
};
use tonic::{Request, Response, Status};

use super::{wire_function, MAX_BATCH_BYTES};
use buildfleet_model::digest::DigestFunction;

#[derive(Debug, Clone, Copy)]
pub(crate) struct CapabilitiesService;

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(
        &self,
        _request: Request<GetCapabilitiesRequest>,
    ) -> Result<Response<ServerCapabilities>, Status> {
        let mut caps = ServerCapabilities {
            cache_capabilities: Some(CacheCapabilities {
                digest_functions: DigestFunction::ALL
                    .into_iter()
                    .map(|f| wire_function(f) as i32)
                    .collect(),
                action_cache_update_capabilities: Some(ActionCacheUpdateCapabilities {
                    update_enabled: true,
                }),
                // No compressors listed: identity only, for batches and
                // ByteStream alike.
                supported_compressors: Vec::new(),
                supported_batch_update_compressors: Vec::new(),
                max_batch_total_size_bytes: MAX_BATCH_BYTES as i64,
                symlink_absolute_path_strategy: symlink_absolute_path_strategy::Value::Allowed
                    as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        // v2 is backwards compatible within the major version: a 2.0 client
        // (Bazel 2.x) sends no digest function and gets SHA-256, which is
        // what 2.0 means; BLAKE3 needs 2.3, the newest we speak.
        let mut low = caps.low_api_version.take().unwrap_or_default();
        low.major = 2;
        low.minor = 0;
        let mut high = low.clone();
        high.minor = 3;
        caps.low_api_version = Some(low);
        caps.high_api_version = Some(high);
        Ok(Response::new(caps))
    }
}
