//! Capabilities: tells REAPI clients to hash with BLAKE3 and how big a batch
//! may be, so they never send requests we would refuse.

use buildfleet_proto::reapi::capabilities_server::Capabilities;
use buildfleet_proto::reapi::{
    digest_function, symlink_absolute_path_strategy, CacheCapabilities, GetCapabilitiesRequest,
    ServerCapabilities,
};
use tonic::{Request, Response, Status};

use super::MAX_BATCH_BYTES;

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
                digest_functions: vec![digest_function::Value::Blake3 as i32],
                max_batch_total_size_bytes: MAX_BATCH_BYTES as i64,
                symlink_absolute_path_strategy: symlink_absolute_path_strategy::Value::Allowed
                    as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        // BLAKE3 digests arrived in REAPI 2.3.
        let mut low = caps.low_api_version.take().unwrap_or_default();
        low.major = 2;
        low.minor = 3;
        let high = low.clone();
        caps.low_api_version = Some(low);
        caps.high_api_version = Some(high);
        Ok(Response::new(caps))
    }
}
