//! The object-store port: where task envelopes, blobs, results and heartbeats live.

use std::fmt::Debug;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, ObjectPath, Result};

/// What `head` and `list` know about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's path.
    pub path: ObjectPath,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects on this page, in lexicographic path order.
    pub objects: Vec<ObjectMeta>,
    /// Pass this to `list` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A subscription to changes under a prefix, for stores that can notify (a local directory).
#[async_trait]
pub trait Watch: Send + Debug {
    /// Waits until something under the watched prefix may have changed or `timeout` passes;
    /// true when woken by a change. Changes are never lost: one that happened since the last
    /// call returns at once.
    async fn changed(&mut self, timeout: Duration) -> bool;
}

/// A flat key/value object store with conditional create, the data plane of a session.
///
/// Implementations: `starburst_cloud::fake::InMemoryStore`, `starburst_local::DirStore`, and
/// the S3 store of `starburst-aws`. All of them pass [`crate::conformance::object_store`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug + 'static {
    /// Writes `data` at `path`, replacing what was there; readers see the old or the new
    /// object, never a mix.
    async fn put(&self, path: &ObjectPath, data: Bytes) -> Result<()>;

    /// Writes `data` at `path` only if nothing is there; otherwise
    /// [`Error::AlreadyExists`]. Of concurrent callers exactly one succeeds.
    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> Result<()>;

    /// Reads the whole object, or [`Error::NotFound`].
    async fn get(&self, path: &ObjectPath) -> Result<Bytes>;

    /// Reads the bytes `range` of the object; a range past the end is cut at the end.
    async fn get_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes>;

    /// The object's metadata, or [`Error::NotFound`].
    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta>;

    /// Removes the object; removing a missing object succeeds.
    async fn delete(&self, path: &ObjectPath) -> Result<()>;

    /// One page of the objects at or below `prefix`, continuing from `page_token`.
    async fn list(&self, prefix: &ObjectPath, page_token: Option<String>) -> Result<ListPage>;

    /// Writes a large object, in parallel parts where the store supports it. The default is
    /// one `put`.
    async fn put_large(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        self.put(path, data).await
    }

    /// Subscribes to changes under `prefix`, or `None` when the store cannot notify and the
    /// caller must poll.
    fn watch(&self, _prefix: &ObjectPath) -> Option<Box<dyn Watch>> {
        None
    }
}

/// Conveniences over [`ObjectStore`], for every store.
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// `get` that turns [`Error::NotFound`] into `None`.
    async fn get_opt(&self, path: &ObjectPath) -> Result<Option<Bytes>> {
        match self.get(path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object below `prefix`, following all pages.
    async fn list_all(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.list(prefix, token).await?;
            out.extend(page.objects);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `put_if_absent` that reports whether this call created the object.
    async fn create(&self, path: &ObjectPath, data: Bytes) -> Result<bool> {
        match self.put_if_absent(path, data).await {
            Ok(()) => Ok(true),
            Err(Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}
