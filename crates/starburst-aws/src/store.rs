//! The object store on S3.

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use starburst_cloud::{Error, ListPage, ObjectMeta, ObjectPath, ObjectStore, Result};
use tokio::task::JoinSet;

use crate::Aws;
use crate::error::{Failure, map};

/// The smallest part S3 accepts in a multipart upload (all but the last part).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How the store uses S3 (where and as whom is [`Aws`]'s business).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Options {
    /// Size of each part of [`ObjectStore::put_large`]; objects up to this size are one
    /// `PutObject`. At least 5 MiB (S3's minimum); default 8 MiB.
    pub part_size: usize,
    /// How many parts of one `put_large` are uploaded at once; default 8.
    pub parallelism: usize,
    /// Ask for server-side encryption with S3-managed keys (`AES256`) on every write; default
    /// on. (Buckets with default encryption encrypt anyway; this makes it explicit.)
    pub server_side_encryption: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            parallelism: 8,
            server_side_encryption: true,
        }
    }
}

impl S3Options {
    /// These options with the given part size for multipart uploads.
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size;
        self
    }

    /// These options with the given number of parts uploaded at once.
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism;
        self
    }
}

/// An object store whose objects are the keys below `prefix/` in an S3 bucket.
///
/// `put_if_absent` is a `PutObject` with `If-None-Match: *`, so of concurrent writers exactly
/// one wins (S3's conditional writes). `put_large` is a multipart upload of parallel parts,
/// aborted when a part fails. `get` reads the first part with a ranged GET (one request for
/// objects up to a part) and the rest of a larger object with parallel ranged GETs of the same
/// version (`If-Match`). The store cannot notify: callers poll.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    parallelism: usize,
    sse: Option<ServerSideEncryption>,
}

impl S3Store {
    /// A store on `bucket` below `prefix` (may be empty), configured by the standard AWS chain
    /// (see [`Aws::from_env`]).
    pub async fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> Result<Self> {
        Self::new(&Aws::from_env().await, bucket, prefix, S3Options::default())
    }

    /// A store on `bucket` below `prefix` (may be empty). With an endpoint URL set (an
    /// emulator, MinIO), requests use path-style addressing.
    pub fn new(
        aws: &Aws,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        options: S3Options,
    ) -> Result<Self> {
        if options.part_size < MIN_PART_SIZE {
            return Err(Error::invalid(
                "connect to S3",
                format!(
                    "part size {} is below S3's minimum of {MIN_PART_SIZE} bytes",
                    options.part_size
                ),
            ));
        }
        let bucket = bucket.into();
        let prefix = prefix.into().trim_matches('/').to_owned();
        if bucket.is_empty() {
            return Err(Error::invalid("connect to S3", "the bucket name is empty"));
        }
        let config = aws_sdk_s3::config::Builder::from(aws.sdk())
            .force_path_style(aws.endpoint_url().is_some())
            .build();
        Ok(Self {
            client: Client::from_conf(config),
            bucket,
            prefix,
            part_size: options.part_size,
            parallelism: options.parallelism.max(1),
            sse: options
                .server_side_encryption
                .then_some(ServerSideEncryption::Aes256),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix below which the store's objects lie (no trailing `/`; may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, path: &ObjectPath) -> String {
        if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{}", self.prefix, path)
        }
    }

    /// `bucket/key`, the resource named in errors.
    fn resource(&self, key: &str) -> String {
        format!("{}/{key}", self.bucket)
    }

    /// The path of `key`, or `None` for a key outside the prefix or not a valid path.
    fn path_of(&self, key: &str) -> Option<ObjectPath> {
        let rest = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        ObjectPath::parse(rest).ok()
    }

    async fn multipart(&self, key: &str, data: Bytes) -> Result<()> {
        let op = "put_large";
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_server_side_encryption(self.sse.clone())
            .send()
            .await
            .map_err(|e| map(op, self.resource(key), e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                Error::other(op, self.resource(key), "S3 returned no multipart upload id")
            })?
            .to_owned();
        let result = self.upload_parts(key, &upload_id, data).await;
        let result = match result {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map(op, self.resource(key), e)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Best effort: an upload left behind is also removed by the bucket's lifecycle rule.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn get_whole(&self, key: &str) -> Result<Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map("get", self.resource(key), e))?;
        collect("get", self.resource(key), out.body).await
    }

    /// The rest of an object of `total` bytes whose first part is `head`: ranged GETs of one
    /// part each, `parallelism` at a time, all of the same version (`If-Match` its ETag).
    async fn get_rest(
        &self,
        key: &str,
        head: Bytes,
        total: u64,
        etag: Option<String>,
    ) -> Result<Bytes> {
        let part = self.part_size as u64;
        let ranges: Vec<(usize, Range<u64>)> = (head.len() as u64..total)
            .step_by(self.part_size)
            .enumerate()
            .map(|(i, start)| (i, start..(start + part).min(total)))
            .collect();
        let mut pending = ranges.into_iter();
        let mut tasks = JoinSet::new();
        let mut parts: Vec<(usize, Bytes)> = Vec::new();
        let spawn = |tasks: &mut JoinSet<Result<(usize, Bytes)>>, (i, r): (usize, Range<u64>)| {
            let client = self.client.clone();
            let (bucket, key, etag) = (self.bucket.clone(), key.to_owned(), etag.clone());
            let resource = self.resource(&key);
            tasks.spawn(async move {
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .range(format!("bytes={}-{}", r.start, r.end - 1))
                    .set_if_match(etag)
                    .send()
                    .await
                    .map_err(|e| map("get", resource.clone(), e))?;
                let bytes = collect("get", resource, out.body).await?;
                Ok((i, bytes))
            });
        };
        for r in pending.by_ref().take(self.parallelism) {
            spawn(&mut tasks, r);
        }
        while let Some(done) = tasks.join_next().await {
            // Dropping the JoinSet on an early return aborts the parts still in flight.
            parts.push(done.map_err(|e| Error::other("get", self.resource(key), e))??);
            if let Some(r) = pending.next() {
                spawn(&mut tasks, r);
            }
        }
        parts.sort_by_key(|(i, _)| *i);
        let mut buf = Vec::with_capacity(total as usize);
        buf.extend_from_slice(&head);
        for (_, p) in parts {
            buf.extend_from_slice(&p);
        }
        if buf.len() as u64 != total {
            return Err(Error::Transient {
                op: "get",
                resource: self.resource(key),
                source: format!("read {} of {total} bytes", buf.len()).into(),
            });
        }
        Ok(Bytes::from(buf))
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        data: Bytes,
    ) -> Result<Vec<CompletedPart>> {
        let chunks: Vec<(i32, Bytes)> = (0..data.len())
            .step_by(self.part_size)
            .zip(1..)
            .map(|(start, n)| {
                (
                    n,
                    data.slice(start..(start + self.part_size).min(data.len())),
                )
            })
            .collect();
        let mut pending = chunks.into_iter();
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        let spawn = |tasks: &mut JoinSet<Result<CompletedPart>>, (n, chunk): (i32, Bytes)| {
            let client = self.client.clone();
            let (bucket, key, upload_id) =
                (self.bucket.clone(), key.to_owned(), upload_id.to_owned());
            let resource = self.resource(&key);
            tasks.spawn(async move {
                let out = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(n)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| map("put_large", resource, e))?;
                Ok(CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .build())
            });
        };
        for chunk in pending.by_ref().take(self.parallelism) {
            spawn(&mut tasks, chunk);
        }
        while let Some(done) = tasks.join_next().await {
            // Dropping the JoinSet on an early return aborts the parts still in flight.
            let part = done.map_err(|e| Error::other("put_large", self.resource(key), e))??;
            parts.push(part);
            if let Some(chunk) = pending.next() {
                spawn(&mut tasks, chunk);
            }
        }
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }
}

/// The total size in a `Content-Range: bytes 0-99/1234` header.
fn total_size(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

async fn collect(op: &'static str, resource: String, body: ByteStream) -> Result<Bytes> {
    body.collect()
        .await
        .map(|b| b.into_bytes())
        .map_err(|e| Error::Transient {
            op,
            resource,
            source: e.into(),
        })
}

fn modified(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        let key = self.key(path);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .set_server_side_encryption(self.sse.clone())
            .body(ByteStream::from(data))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| map("put", self.resource(&key), e))
    }

    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        let key = self.key(path);
        match self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .set_server_side_encryption(self.sse.clone())
            .body(ByteStream::from(data))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is_precondition_failed() => {
                Err(Error::already_exists("put_if_absent", self.resource(&key)))
            }
            Err(e) => Err(map("put_if_absent", self.resource(&key), e)),
        }
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes> {
        let key = self.key(path);
        // The first part as a ranged GET: one request for objects up to a part, and the total
        // size (Content-Range) for the parallel download of the rest of a larger one.
        let first = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .range(format!("bytes=0-{}", self.part_size - 1))
            .send()
            .await;
        let out = match first {
            Ok(out) => out,
            // An empty object has no byte 0.
            Err(e) if Failure::of(&e).is_invalid_range() => return self.get_whole(&key).await,
            Err(e) => return Err(map("get", self.resource(&key), e)),
        };
        let total = out.content_range().and_then(total_size);
        let etag = out.e_tag().map(str::to_owned);
        let head = collect("get", self.resource(&key), out.body).await?;
        match total {
            Some(total) if total > head.len() as u64 => {
                self.get_rest(&key, head, total, etag).await
            }
            _ => Ok(head),
        }
    }

    async fn get_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        if range.start > range.end {
            return Err(Error::invalid(
                "get_range",
                format!("range {range:?} is reversed"),
            ));
        }
        if range.start == range.end {
            // HTTP cannot ask for zero bytes; an empty range of an existing object is empty.
            return self.head(path).await.map(|_| Bytes::new());
        }
        let key = self.key(path);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
        {
            Ok(out) => out,
            // The range starts at or past the end of an existing object: cut to nothing.
            Err(e) if Failure::of(&e).is_invalid_range() => return Ok(Bytes::new()),
            Err(e) => return Err(map("get_range", self.resource(&key), e)),
        };
        let body = out.body.collect().await.map_err(|e| Error::Transient {
            op: "get_range",
            resource: self.resource(&key),
            source: e.into(),
        })?;
        Ok(body.into_bytes())
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let key = self.key(path);
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| map("head", self.resource(&key), e))?;
        Ok(ObjectMeta {
            path: path.clone(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified: modified(out.last_modified()),
        })
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let key = self.key(path);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing key; some compatible stores answer 404.
            Err(e) if Failure::of(&e).is_missing_key() => Ok(()),
            Err(e) => Err(map("delete", self.resource(&key), e)),
        }
    }

    async fn list(&self, prefix: &ObjectPath, page_token: Option<String>) -> Result<ListPage> {
        let key_prefix = format!("{}/", self.key(prefix));
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&key_prefix)
            .set_continuation_token(page_token)
            .send()
            .await
            .map_err(|e| map("list", self.resource(&key_prefix), e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    path: self.path_of(o.key()?)?,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: modified(o.last_modified()),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn put_large(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        if data.len() <= self.part_size {
            return self.put(path, data).await;
        }
        self.multipart(&self.key(path), data).await
    }
}
