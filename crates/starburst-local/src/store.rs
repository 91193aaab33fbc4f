//! An object store on a local directory.

use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use notify::{RecursiveMode, Watcher};
use starburst_cloud::{Error, ListPage, ObjectMeta, ObjectPath, ObjectStore, Result, Watch};

const PAGE_SIZE: usize = 1000;

/// Creates `dir` (and missing parents) private to this user: mode 0700 for what it creates,
/// and `dir` itself set to 0700 when it existed. Refuses a `dir` that is not a directory owned
/// by this user (a planted symlink or someone else's directory in a shared temporary folder).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    let me = nix::unistd::Uid::current().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(std::io::Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of this user; refusing to keep data there",
                dir.display()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An object store whose objects are files below a root directory.
///
/// Writes are atomic (a temporary file renamed into place), `put_if_absent` is a hard link that
/// fails if the target exists, so concurrent processes on the same directory get S3's semantics.
/// [`ObjectStore::watch`] is backed by the platform's file notifications (inotify, FSEvents).
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl DirStore {
    /// A store rooted at `root`, created if missing.
    /// Directories it creates are private to the user (mode 0700): session data may hold
    /// anything a future uses.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let tmp = root.join(".tmp");
        private_dir(&tmp).map_err(|e| io("open store", &root, e))?;
        Ok(Self { root, tmp })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `path`.
    pub fn file_of(&self, path: &ObjectPath) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(path.segments());
        p
    }

    fn write_tmp(&self, data: &[u8]) -> Result<PathBuf> {
        let tmp = self.tmp.join(uuid::Uuid::new_v4().simple().to_string());
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("write", &tmp, e))?;
        f.write_all(data).map_err(|e| io("write", &tmp, e))?;
        Ok(tmp)
    }

    fn parent_dir(&self, file: &Path) -> Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create directory", dir, e))?;
        }
        Ok(())
    }
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    let resource = path.display().to_string();
    match e.kind() {
        ErrorKind::NotFound => Error::not_found(op, resource),
        ErrorKind::AlreadyExists => Error::already_exists(op, resource),
        ErrorKind::PermissionDenied => Error::AccessDenied {
            op,
            resource,
            message: e.to_string(),
        },
        _ => Error::other(op, resource, e),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        // Small file operations are cheaper inline than a hop to the blocking pool; only a
        // current-thread runtime, where blocking would stall everything, uses the pool.
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| Error::other("blocking", "task", e))?
        }
        _ => f(),
    }
}

#[async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        let this = self.clone();
        let file = self.file_of(path);
        blocking(move || {
            let tmp = this.write_tmp(&data)?;
            this.parent_dir(&file)?;
            std::fs::rename(&tmp, &file).map_err(|e| io("put", &file, e))
        })
        .await
    }

    async fn put_if_absent(&self, path: &ObjectPath, data: Bytes) -> Result<()> {
        let this = self.clone();
        let file = self.file_of(path);
        blocking(move || {
            let tmp = this.write_tmp(&data)?;
            this.parent_dir(&file)?;
            let linked = std::fs::hard_link(&tmp, &file);
            let _ = std::fs::remove_file(&tmp);
            linked.map_err(|e| io("put_if_absent", &file, e))
        })
        .await
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes> {
        let file = self.file_of(path);
        blocking(move || {
            std::fs::read(&file)
                .map(Bytes::from)
                .map_err(|e| io("get", &file, e))
        })
        .await
    }

    async fn get_range(&self, path: &ObjectPath, range: Range<u64>) -> Result<Bytes> {
        use std::io::{Read, Seek, SeekFrom};
        if range.start > range.end {
            return Err(Error::invalid(
                "get_range",
                format!("range {range:?} is reversed"),
            ));
        }
        let file = self.file_of(path);
        blocking(move || {
            let mut f = std::fs::File::open(&file).map_err(|e| io("get_range", &file, e))?;
            let len = f.metadata().map_err(|e| io("get_range", &file, e))?.len();
            let (start, end) = (range.start.min(len), range.end.min(len));
            f.seek(SeekFrom::Start(start))
                .map_err(|e| io("get_range", &file, e))?;
            let mut buf = vec![0; (end - start) as usize];
            f.read_exact(&mut buf)
                .map_err(|e| io("get_range", &file, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn head(&self, path: &ObjectPath) -> Result<ObjectMeta> {
        let file = self.file_of(path);
        let path = path.clone();
        blocking(move || {
            let m = std::fs::metadata(&file).map_err(|e| io("head", &file, e))?;
            if !m.is_file() {
                return Err(Error::not_found("head", file.display().to_string()));
            }
            Ok(ObjectMeta {
                path,
                size: m.len(),
                modified: m.modified().map_err(|e| io("head", &file, e))?,
            })
        })
        .await
    }

    async fn delete(&self, path: &ObjectPath) -> Result<()> {
        let file = self.file_of(path);
        blocking(move || match std::fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", &file, e)),
        })
        .await
    }

    async fn list(&self, prefix: &ObjectPath, page_token: Option<String>) -> Result<ListPage> {
        let this = self.clone();
        let prefix = prefix.clone();
        blocking(move || {
            let mut all = Vec::new();
            collect(&this.file_of(&prefix), &prefix, &mut all)?;
            all.sort_by(|a: &ObjectMeta, b| a.path.cmp(&b.path));
            let start = match &page_token {
                Some(t) => all.partition_point(|m| m.path.as_str() <= t.as_str()),
                None => 0,
            };
            let rest = &all[start..];
            let objects: Vec<ObjectMeta> = rest.iter().take(PAGE_SIZE).cloned().collect();
            let next = (rest.len() > PAGE_SIZE)
                .then(|| objects.last().map(|m| m.path.to_string()))
                .flatten();
            Ok(ListPage { objects, next })
        })
        .await
    }

    fn watch(&self, prefix: &ObjectPath) -> Option<Box<dyn Watch>> {
        DirWatch::new(&self.file_of(prefix)).map(|w| Box::new(w) as Box<dyn Watch>)
    }
}

fn collect(dir: &Path, path: &ObjectPath, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("list", dir, e)),
    };
    if meta.is_file() {
        out.push(ObjectMeta {
            path: path.clone(),
            size: meta.len(),
            modified: meta.modified().map_err(|e| io("list", dir, e))?,
        });
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let name = entry.file_name();
        // Names that are not valid path segments (editor droppings, our own .tmp) are not objects.
        let Some(child) = name.to_str().and_then(|n| path.child(n).ok()) else {
            continue;
        };
        collect(&entry.path(), &child, out)?;
    }
    Ok(())
}

/// File-notification watch on a directory tree.
#[derive(Debug)]
struct DirWatch {
    _watcher: notify::RecommendedWatcher,
    rx: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl DirWatch {
    fn new(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .ok()?;
        watcher.watch(dir, RecursiveMode::Recursive).ok()?;
        Some(Self {
            _watcher: watcher,
            rx,
        })
    }
}

#[async_trait]
impl Watch for DirWatch {
    async fn changed(&mut self, timeout: Duration) -> bool {
        let woke = match self.rx.try_recv() {
            Ok(()) => true,
            Err(_) => matches!(
                tokio::time::timeout(timeout, self.rx.recv()).await,
                Ok(Some(()))
            ),
        };
        while self.rx.try_recv().is_ok() {}
        woke
    }
}
