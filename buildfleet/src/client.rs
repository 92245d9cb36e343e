//! gRPC client connections with Nagle off: small RPCs must not wait for
//! delayed ACKs.

use anyhow::{Context, Result};
use buildfleet_proto::v1::pipelines_client::PipelinesClient;
use tonic::transport::{Channel, Endpoint};

pub async fn channel(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())
        .with_context(|| format!("bad URL `{url}`"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

pub async fn pipelines(url: &str) -> Result<PipelinesClient<Channel>> {
    Ok(PipelinesClient::new(channel(url).await?).max_decoding_message_size(64 << 20))
}
