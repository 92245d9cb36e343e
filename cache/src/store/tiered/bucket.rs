//! The shared tier: an S3-compatible bucket, through `object_store`. Its
//! calls are async and the store API is not (stores run on blocking
//! threads), so the bucket owns a small runtime and each call waits for
//! its answer there.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig};

use crate::store::StoreError;

/// Where the bucket is and how to sign for it.
#[derive(Clone)]
pub struct BucketConfig {
    /// `https://s3.eu-west-1.amazonaws.com`, or any S3-compatible endpoint.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Prepended to every object name (e.g. `buildfleet/`), so one bucket
    /// can hold several caches.
    pub prefix: String,
}

impl std::fmt::Debug for BucketConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        f.debug_struct("BucketConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Requests in flight at once for a batch (presence checks, reads, uploads).
const CONCURRENCY: usize = 32;

/// Multipart upload parts (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;

pub(crate) struct Bucket {
    s3: Arc<AmazonS3>,
    runtime: Option<tokio::runtime::Runtime>,
    prefix: String,
    shown: String,
}

fn backend(operation: &'static str) -> impl Fn(object_store::Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

impl Bucket {
    pub(crate) fn open(config: &BucketConfig) -> Result<Bucket, StoreError> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_allow_http(config.endpoint.starts_with("http://"))
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .build()
            .map_err(backend("configure the bucket"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                operation: "start the object-store runtime",
                source: Box::new(e),
            })?;
        Ok(Bucket {
            s3: Arc::new(s3),
            runtime: Some(runtime),
            prefix: config.prefix.clone(),
            shown: format!("{}/{}", config.endpoint, config.bucket),
        })
    }

    /// `future` run on the bucket's runtime, waited for here.
    fn wait<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().expect("the bucket's runtime answers every call")
    }

    pub(crate) fn path(&self, name: &str) -> Path {
        Path::from(format!("{}{name}", self.prefix))
    }

    pub(crate) fn get(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        self.wait(async move { fetch(&s3, &path).await })
    }

    /// Several objects, in order, fetched concurrently.
    pub(crate) fn get_many(&self, names: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        self.each(names, |s3, path| async move { fetch(&s3, &path).await })
    }

    /// Whether each object exists, in order, asked concurrently.
    pub(crate) fn contains_many(&self, names: &[String]) -> Result<Vec<bool>, StoreError> {
        self.each(names, |s3, path| async move {
            match s3.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(backend("head an object")(e)),
            }
        })
    }

    /// `call` for each name, up to [`CONCURRENCY`] at once, answers in order.
    fn each<T, F>(
        &self,
        names: &[String],
        call: impl Fn(Arc<AmazonS3>, Path) -> F + Send + Sync + 'static,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let s3 = self.s3.clone();
        let paths: Vec<Path> = names.iter().map(|n| self.path(n)).collect();
        self.wait(async move {
            futures::stream::iter(paths)
                .map(|p| call(s3.clone(), p))
                .buffered(CONCURRENCY)
                .try_collect()
                .await
        })
    }

    /// Stores `data` unless the name exists: content-addressed objects
    /// are immutable, so another node's copy is as good as ours.
    pub(crate) fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        self.wait(async move { put_if_absent(&s3, &path, data).await })
    }

    /// [`Bucket::put_new`] for many objects, up to [`CONCURRENCY`] at
    /// once; each answered on its own, in order.
    pub(crate) fn put_new_many(
        &self,
        objects: Vec<(String, Bytes)>,
    ) -> Vec<Result<(), StoreError>> {
        let s3 = self.s3.clone();
        let objects: Vec<(Path, Bytes)> = objects
            .into_iter()
            .map(|(name, data)| (self.path(&name), data))
            .collect();
        self.wait(async move {
            futures::stream::iter(objects)
                .map(|(path, data)| {
                    let s3 = s3.clone();
                    async move { put_if_absent(&s3, &path, data).await }
                })
                .buffered(CONCURRENCY)
                .collect()
                .await
        })
    }

    /// Stores (replacing) `data`: metadata, which changes.
    pub(crate) fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        self.wait(async move {
            s3.put(&path, PutPayload::from(data))
                .await
                .map(|_| ())
                .map_err(backend("put an object"))
        })
    }

    /// Uploads a file in parts of [`PART_BYTES`], at most two in flight,
    /// unless the name exists: a large blob never sits whole in memory.
    pub(crate) fn put_file_new(&self, name: &str, file: std::fs::File) -> Result<(), StoreError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        self.wait(async move {
            match s3.head(&path).await {
                Ok(_) => return Ok(()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend("head an object")(e)),
            }
            let upload = s3
                .put_multipart(&path)
                .await
                .map_err(backend("start a multipart upload"))?;
            let mut parts = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut file = tokio::fs::File::from_std(file);
            let mut piece = vec![0u8; PART_BYTES];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut file, &mut piece)
                    .await
                    .map_err(|e| StoreError::Backend {
                        operation: "read a blob to upload",
                        source: Box::new(e),
                    })?;
                if n == 0 {
                    break;
                }
                parts
                    .wait_for_capacity(2)
                    .await
                    .map_err(backend("upload a part"))?;
                parts.write(&piece[..n]);
            }
            parts
                .finish()
                .await
                .map(|_| ())
                .map_err(backend("finish a multipart upload"))
        })
    }

    /// Streams an object into `into` piece by piece (it hashes as it
    /// goes); false if there is no such object.
    pub(crate) fn get_into(
        &self,
        name: &str,
        mut into: crate::store::StagedBlob,
    ) -> Result<Option<crate::store::StagedBlob>, StoreError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        self.wait(async move {
            let got = match s3.get(&path).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(backend("get an object")(e)),
            };
            let mut stream = got.into_stream();
            while let Some(piece) = stream.next().await {
                let piece = piece.map_err(backend("read an object"))?;
                into.append(&piece)?;
            }
            Ok(Some(into))
        })
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), StoreError> {
        let (s3, path) = (self.s3.clone(), self.path(name));
        self.wait(async move {
            match s3.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(backend("delete an object")(e)),
            }
        })
    }

    /// Names (without the bucket prefix) of every object under `name_prefix`.
    pub(crate) fn list(&self, name_prefix: &str) -> Result<Vec<String>, StoreError> {
        let s3 = self.s3.clone();
        let full = format!("{}{name_prefix}", self.prefix);
        let own = self.prefix.clone();
        self.wait(async move {
            // `list` takes a directory; filter to the exact name prefix.
            let dir = full.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
            let dir = (!dir.is_empty()).then(|| Path::from(dir));
            let metas: Vec<_> = s3
                .list(dir.as_ref())
                .try_collect()
                .await
                .map_err(backend("list objects"))?;
            let mut names: Vec<String> = metas
                .into_iter()
                .map(|m| m.location.to_string())
                .filter(|l| l.starts_with(&full))
                .filter_map(|l| l.strip_prefix(&own).map(str::to_owned))
                .collect();
            names.sort();
            Ok(names)
        })
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}

async fn put_if_absent(s3: &AmazonS3, path: &Path, data: Bytes) -> Result<(), StoreError> {
    match s3
        .put_opts(path, PutPayload::from(data), PutMode::Create.into())
        .await
    {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(backend("put an object")(e)),
    }
}

async fn fetch(s3: &AmazonS3, path: &Path) -> Result<Option<Bytes>, StoreError> {
    match s3.get(path).await {
        Ok(got) => got
            .bytes()
            .await
            .map(Some)
            .map_err(backend("read an object")),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(backend("get an object")(e)),
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // A runtime may not be dropped from async code; let it wind down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
