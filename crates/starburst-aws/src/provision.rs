//! The provisioning port on AWS: S3 buckets, ECR repositories, ECS clusters, CloudWatch log
//! groups, EC2 security groups and IAM roles, created idempotently with a set-up's tags, found
//! by tag and deleted.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::types::{TaskDefinitionFamilyStatus, TaskDefinitionStatus};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types as s3t;
use starburst_cloud::{
    Account, BucketSpec, BuildProjectSpec, Change, Ensured, EnsuredNetwork, Error, LogGroupSpec,
    NetworkConfig, NetworkRequest, Provisioner, RepositorySpec, Resource, ResourceKind, Result,
    RoleSpec, SETUP_TAG, Tags,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::Aws;
use crate::build::build_image;
use crate::compute::FAMILY_PREFIX;
use crate::error::map;
use crate::network::{self, Ec2Network, Group};
use crate::settle::retry_while;

/// The capacity providers every cluster has; the first is the default.
const CAPACITY_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// How long `delete` waits, by default, for a cluster's tasks to stop.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// How long `delete` waits, by default, for Fargate to release the network interfaces of stopped
/// tasks before their security group can go: usually minutes, at times much longer.
const ENI_WAIT: Duration = Duration::from_secs(20 * 60);

/// How long a step waits for what AWS has just created to become visible or usable (eventual
/// consistency: a new bucket answering NoSuchBucket, a new service-linked role ECS cannot yet
/// assume). Usually seconds.
const SETTLE: Duration = Duration::from_secs(120);

/// ECS's service-linked role, which a cluster with capacity providers needs.
const ECS_SERVICE: &str = "ecs.amazonaws.com";

/// Id of the lifecycle rule that expires session data.
const EXPIRE_RULE: &str = "starburst-expire-session-data";
/// Id of the lifecycle rule that aborts incomplete multipart uploads.
const ABORT_RULE: &str = "starburst-abort-incomplete-uploads";

/// The [`Provisioner`] on AWS.
///
/// Every `ensure_*` first looks for the resource. When it is missing, it is created with its
/// settings and the given tags (in the create call itself wherever the service allows, so a
/// resource never exists untagged). When it exists carrying the same [`SETUP_TAG`] value, each
/// setting is read and compared, and only what differs is written ([`Change::Updated`], else
/// [`Change::Unchanged`] after read-only calls). When it exists without that tag (another
/// set-up's, the user's own, or another account's bucket) the call fails with
/// [`Error::AlreadyExists`] and touches nothing.
///
/// One exception, for buckets only: S3 cannot tag a bucket in the call that creates it, so an
/// interrupted create leaves a bucket of this account with no tag at all. Such a bucket (owned by
/// this account, with no tag whatsoever) is taken as that leftover and adopted: tagged and
/// configured, reported as [`Change::Updated`]. Set-up names its buckets after the set-up id, so
/// an unrelated untagged bucket of that name is not expected.
///
/// Settings: a bucket blocks all public access, encrypts by default with SSE-S3 (AES256) and a
/// bucket key, expires objects under `expire_prefix` after `expire_days` and aborts multipart
/// uploads left incomplete for a day. A repository scans on push and keeps the newest
/// `keep_images` images. A cluster has the `FARGATE` and `FARGATE_SPOT` capacity providers,
/// `FARGATE` the default. A log group has the given retention. The security group has no
/// inbound rule (any found on this set-up's group are revoked) and EC2's allow-all outbound
/// rule. A role trusts `spec.service` with `sts:AssumeRole` and has one inline policy.
///
/// `delete` empties a bucket first (every version, delete marker and incomplete upload), stops
/// a cluster's tasks, removes a role's policies and instance profiles, and waits while a
/// cluster still has stopping tasks (5 minutes by default) or a security group is still used by
/// their network interfaces (20 minutes by default; a group used by any other interface is an
/// error at once, naming it); [`AwsProvisioner::with_wait`] sets both.
#[derive(Debug, Clone)]
pub struct AwsProvisioner {
    s3: aws_sdk_s3::Client,
    ecr: aws_sdk_ecr::Client,
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
    codebuild: aws_sdk_codebuild::Client,
    network: Ec2Network,
    region: Option<String>,
    /// Both waits of `delete`, when set (else [`DEFAULT_WAIT`] and [`ENI_WAIT`]).
    wait: Option<Duration>,
    account: OnceCell<Account>,
}

impl AwsProvisioner {
    /// The provisioner of the account and region of `aws`.
    pub fn new(aws: &Aws) -> Self {
        let sdk = aws.sdk();
        Self {
            s3: aws_sdk_s3::Client::new(sdk),
            ecr: aws_sdk_ecr::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            tagging: aws_sdk_resourcegroupstagging::Client::new(sdk),
            codebuild: aws_sdk_codebuild::Client::new(sdk),
            network: Ec2Network::new(aws),
            region: aws.region().map(str::to_owned),
            wait: None,
            account: OnceCell::new(),
        }
    }

    /// This provisioner, with `delete` waiting at most `wait` for a cluster's tasks to stop or
    /// a security group's network interfaces to be released before it gives up.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    fn region(&self, op: &'static str) -> Result<&str> {
        self.region.as_deref().ok_or_else(|| {
            Error::invalid(
                op,
                "no AWS region is configured; set AWS_REGION (or a profile's region)",
            )
        })
    }

    async fn caller(&self) -> Result<Account> {
        const OP: &str = "identify the AWS account";
        let region = self.region(OP)?.to_owned();
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|err| map(OP, "the caller's credentials".into(), err))?;
        let id = out
            .account()
            .ok_or_else(|| Error::other(OP, "the caller", "STS answered without an account id"))?
            .to_owned();
        let partition = out
            .arn()
            .and_then(|arn| arn.split(':').nth(1))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Error::other(OP, "the caller", "STS answered without a caller ARN"))?
            .to_owned();
        Ok(Account {
            id,
            region,
            partition,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Tags and ownership
// ---------------------------------------------------------------------------------------------

/// The set-up id in `tags`; every `ensure_*` needs one.
fn setup_id<'a>(op: &'static str, tags: &'a Tags) -> Result<&'a str> {
    tags.get(SETUP_TAG)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                op,
                format!(
                    "the tags carry no {SETUP_TAG}; every resource of a set-up names its set-up"
                ),
            )
        })
}

/// Whose an existing resource is, judged by its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// Tagged with this set-up's id.
    Ours,
    /// No tag at all.
    Untagged,
    /// Tagged, but not with this set-up's id (`Some(other set-up)` or `None`).
    Other(Option<String>),
}

fn owner(existing: &Tags, setup: &str) -> Owner {
    match existing.get(SETUP_TAG) {
        Some(v) if v == setup => Owner::Ours,
        Some(v) => Owner::Other(Some(v.clone())),
        None if existing.is_empty() => Owner::Untagged,
        None => Owner::Other(None),
    }
}

/// The error for a resource of the asked-for name that this set-up did not create.
fn foreign(op: &'static str, kind: ResourceKind, name: &str, whose: &Owner) -> Error {
    let why = match whose {
        Owner::Other(Some(other)) => format!("it belongs to starburst set-up {other}"),
        Owner::Other(None) | Owner::Untagged => {
            format!("it has no {SETUP_TAG} tag, so starburst did not create it")
        }
        Owner::Ours => "it belongs to this set-up".to_owned(),
    };
    Error::already_exists(
        op,
        format!("{kind} {name} ({why}; it is left untouched: choose another {kind} name)"),
    )
}

/// The tags of `wanted` that `existing` lacks or has with another value.
fn missing_tags(existing: &Tags, wanted: &Tags) -> Tags {
    wanted
        .iter()
        .filter(|(k, v)| existing.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `Updated` when anything was written, else `Unchanged`.
fn change(wrote: bool) -> Change {
    if wrote {
        Change::Updated
    } else {
        Change::Unchanged
    }
}

fn ensured(kind: ResourceKind, name: &str, id: &str, change: Change) -> Ensured {
    Ensured {
        resource: Resource {
            kind,
            name: name.to_owned(),
            id: id.to_owned(),
        },
        change,
    }
}

/// An SDK builder's missing-field error (a bug here, not the caller's).
fn built<T>(
    op: &'static str,
    resource: &str,
    r: std::result::Result<T, aws_sdk_s3::error::BuildError>,
) -> Result<T> {
    r.map_err(|err| Error::other(op, resource, err))
}

// ---------------------------------------------------------------------------------------------
// Waiting for dependents
// ---------------------------------------------------------------------------------------------

/// One try of an operation that something else can block for a while.
enum Step<T> {
    /// It succeeded (or failed for good).
    Done(T),
    /// Something still depends on the resource; this is the error if that lasts.
    Blocked(Error),
}

/// Runs `attempt` until it is not blocked, pausing with exponential backoff (0.5 s doubling
/// up to 15 s) for at most `wait` in all; then the last blocked error.
async fn until_unblocked<T, F, Fut>(wait: Duration, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Step<T>>>,
{
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(500);
    loop {
        match attempt().await? {
            Step::Done(value) => return Ok(value),
            Step::Blocked(err) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(err);
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_secs(15));
            }
        }
    }
}

/// Runs `attempt` again while it fails with not-found, for at most [`SETTLE`]: what AWS created
/// a moment ago may not be visible yet (eventual consistency), and then it is.
async fn once_visible<T, F, Fut>(attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_while(SETTLE, Error::is_not_found, attempt).await
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// Decodes IAM's URL-encoded policy documents (`%7B%22Version...`); text without escapes is
/// returned as is.
fn percent_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A policy document as IAM returns it, parsed (`None` when it is not JSON even decoded).
fn iam_document(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&percent_decode(text))
        .or_else(|_| serde_json::from_str(text))
        .ok()
}

/// The trust policy letting `service` assume a role.
fn trust_policy(service: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }],
    })
}

/// The ECR lifecycle policy keeping the newest `keep` images.
fn repository_policy(keep: u32) -> serde_json::Value {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("keep the newest {keep} images"),
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep,
            },
            "action": { "type": "expire" },
        }],
    })
}

// ---------------------------------------------------------------------------------------------
// Buckets
// ---------------------------------------------------------------------------------------------

/// A lifecycle rule reduced to what starburst sets, for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RuleView {
    id: String,
    prefix: String,
    enabled: bool,
    expire_days: Option<i32>,
    abort_days: Option<i32>,
    /// The rule does something else too (transitions, tag filters, ...).
    more: bool,
}

fn rule_view(rule: &s3t::LifecycleRule) -> RuleView {
    #[allow(deprecated)]
    let legacy_prefix = rule.prefix();
    let filter = rule.filter();
    let prefix = filter
        .and_then(|f| f.prefix())
        .or(legacy_prefix)
        .unwrap_or_default()
        .to_owned();
    let more = filter.is_some_and(|f| {
        f.tag().is_some()
            || f.and().is_some()
            || f.object_size_greater_than().is_some()
            || f.object_size_less_than().is_some()
    }) || !rule.transitions().is_empty()
        || !rule.noncurrent_version_transitions().is_empty()
        || rule.noncurrent_version_expiration().is_some()
        || rule
            .expiration()
            .is_some_and(|e| e.date().is_some() || e.expired_object_delete_marker().is_some());
    RuleView {
        id: rule.id().unwrap_or_default().to_owned(),
        prefix,
        enabled: *rule.status() == s3t::ExpirationStatus::Enabled,
        expire_days: rule.expiration().and_then(|e| e.days()),
        abort_days: rule
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        more,
    }
}

fn wanted_rules(spec: &BucketSpec) -> Vec<RuleView> {
    let mut rules = vec![
        RuleView {
            id: EXPIRE_RULE.to_owned(),
            prefix: spec.expire_prefix.clone(),
            enabled: true,
            expire_days: Some(spec.expire_days as i32),
            abort_days: None,
            more: false,
        },
        RuleView {
            id: ABORT_RULE.to_owned(),
            prefix: String::new(),
            enabled: true,
            expire_days: None,
            abort_days: Some(1),
            more: false,
        },
    ];
    rules.sort();
    rules
}

fn lifecycle(spec: &BucketSpec) -> Result<s3t::BucketLifecycleConfiguration> {
    const OP: &str = "configure the bucket lifecycle";
    let expire = built(
        OP,
        &spec.name,
        s3t::LifecycleRule::builder()
            .id(EXPIRE_RULE)
            .filter(
                s3t::LifecycleRuleFilter::builder()
                    .prefix(&spec.expire_prefix)
                    .build(),
            )
            .status(s3t::ExpirationStatus::Enabled)
            .expiration(
                s3t::LifecycleExpiration::builder()
                    .days(spec.expire_days as i32)
                    .build(),
            )
            .build(),
    )?;
    let abort = built(
        OP,
        &spec.name,
        s3t::LifecycleRule::builder()
            .id(ABORT_RULE)
            .filter(s3t::LifecycleRuleFilter::builder().prefix("").build())
            .status(s3t::ExpirationStatus::Enabled)
            .abort_incomplete_multipart_upload(
                s3t::AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(1)
                    .build(),
            )
            .build(),
    )?;
    built(
        OP,
        &spec.name,
        s3t::BucketLifecycleConfiguration::builder()
            .rules(expire)
            .rules(abort)
            .build(),
    )
}

impl AwsProvisioner {
    /// True when this account owns bucket `name` (ListBuckets lists only the caller's own).
    /// Not HeadBucket: it succeeds on another account's bucket that grants us access (and moto
    /// serves any account's bucket there, ignoring ExpectedBucketOwner).
    async fn owns_bucket(&self, name: &str) -> Result<bool> {
        let mut pages = self.s3.list_buckets().prefix(name).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("list buckets", format!("bucket {name}"), err))?;
            if page.buckets().iter().any(|b| b.name() == Some(name)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The tags of bucket `name` (none: empty).
    async fn bucket_tags(&self, name: &str) -> Result<Tags> {
        match self.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect()),
            Err(err) if err.code() == Some("NoSuchTagSet") => Ok(Tags::new()),
            Err(err) => Err(map("read bucket tags", format!("bucket {name}"), err)),
        }
    }

    async fn put_bucket_tags(&self, name: &str, tags: &Tags) -> Result<()> {
        const OP: &str = "tag the bucket";
        let set = tags
            .iter()
            .map(|(k, v)| built(OP, name, s3t::Tag::builder().key(k).value(v).build()))
            .collect::<Result<Vec<_>>>()?;
        let tagging = built(
            OP,
            name,
            s3t::Tagging::builder().set_tag_set(Some(set)).build(),
        )?;
        self.s3
            .put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .map_err(|err| map(OP, format!("bucket {name}"), err))?;
        Ok(())
    }

    /// Brings bucket `spec.name`'s settings in line; with `check`, reads each first and writes
    /// only what differs. True when something was written.
    async fn configure_bucket(&self, spec: &BucketSpec, check: bool) -> Result<bool> {
        let name = spec.name.as_str();
        let resource = || format!("bucket {name}");
        let mut wrote = false;

        // Public access block: all four on.
        let blocked = if check {
            match self.s3.get_public_access_block().bucket(name).send().await {
                Ok(out) => out.public_access_block_configuration().is_some_and(|c| {
                    c.block_public_acls() == Some(true)
                        && c.ignore_public_acls() == Some(true)
                        && c.block_public_policy() == Some(true)
                        && c.restrict_public_buckets() == Some(true)
                }),
                Err(err) if err.code() == Some("NoSuchPublicAccessBlockConfiguration") => false,
                Err(err) => return Err(map("read the public access block", resource(), err)),
            }
        } else {
            false
        };
        if !blocked {
            self.s3
                .put_public_access_block()
                .bucket(name)
                .public_access_block_configuration(
                    s3t::PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|err| map("block public access", resource(), err))?;
            wrote = true;
        }

        // Default encryption: SSE-S3 with a bucket key.
        let encrypted = if check {
            match self.s3.get_bucket_encryption().bucket(name).send().await {
                Ok(out) => out.server_side_encryption_configuration().is_some_and(|c| {
                    c.rules().iter().any(|r| {
                        r.bucket_key_enabled() == Some(true)
                            && r.apply_server_side_encryption_by_default()
                                .is_some_and(|d| {
                                    *d.sse_algorithm() == s3t::ServerSideEncryption::Aes256
                                })
                    })
                }),
                Err(err)
                    if err.code() == Some("ServerSideEncryptionConfigurationNotFoundError") =>
                {
                    false
                }
                Err(err) => return Err(map("read the default encryption", resource(), err)),
            }
        } else {
            false
        };
        if !encrypted {
            const OP: &str = "set the default encryption";
            let by_default = built(
                OP,
                name,
                s3t::ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(s3t::ServerSideEncryption::Aes256)
                    .build(),
            )?;
            let config = built(
                OP,
                name,
                s3t::ServerSideEncryptionConfiguration::builder()
                    .rules(
                        s3t::ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(by_default)
                            .bucket_key_enabled(true)
                            .build(),
                    )
                    .build(),
            )?;
            self.s3
                .put_bucket_encryption()
                .bucket(name)
                .server_side_encryption_configuration(config)
                .send()
                .await
                .map_err(|err| map(OP, resource(), err))?;
            wrote = true;
        }

        // Lifecycle: exactly starburst's two rules.
        let in_line = if check {
            match self
                .s3
                .get_bucket_lifecycle_configuration()
                .bucket(name)
                .send()
                .await
            {
                Ok(out) => {
                    let mut rules: Vec<RuleView> = out.rules().iter().map(rule_view).collect();
                    rules.sort();
                    rules == wanted_rules(spec)
                }
                Err(err) if err.code() == Some("NoSuchLifecycleConfiguration") => false,
                Err(err) => return Err(map("read the bucket lifecycle", resource(), err)),
            }
        } else {
            false
        };
        if !in_line {
            self.s3
                .put_bucket_lifecycle_configuration()
                .bucket(name)
                .lifecycle_configuration(lifecycle(spec)?)
                .send()
                .await
                .map_err(|err| map("configure the bucket lifecycle", resource(), err))?;
            wrote = true;
        }
        Ok(wrote)
    }

    /// Bucket `spec.name`, which exists and is this account's.
    async fn existing_bucket(
        &self,
        spec: &BucketSpec,
        tags: &Tags,
        setup: &str,
    ) -> Result<Ensured> {
        const OP: &str = "ensure the bucket";
        let existing = self.bucket_tags(&spec.name).await?;
        let wrote = match owner(&existing, setup) {
            Owner::Ours => {
                let mut wrote = self.configure_bucket(spec, true).await?;
                if !missing_tags(&existing, tags).is_empty() {
                    let mut merged = existing.clone();
                    merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                    self.put_bucket_tags(&spec.name, &merged).await?;
                    wrote = true;
                }
                wrote
            }
            // The leftover of an interrupted create of this set-up (see the type's docs).
            Owner::Untagged => {
                self.put_bucket_tags(&spec.name, tags).await?;
                self.configure_bucket(spec, false).await?;
                true
            }
            whose @ Owner::Other(_) => {
                return Err(foreign(OP, ResourceKind::Bucket, &spec.name, &whose));
            }
        };
        Ok(ensured(
            ResourceKind::Bucket,
            &spec.name,
            &spec.name,
            change(wrote),
        ))
    }

    /// Deletes every object version, delete marker and incomplete upload of bucket `name`.
    async fn empty_bucket(&self, name: &str) -> Result<()> {
        let resource = || format!("bucket {name}");
        let mut batch: Vec<s3t::ObjectIdentifier> = Vec::new();
        // (ListObjectVersions and ListMultipartUploads have no SDK paginator: markers by hand.)
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .s3
                .list_object_versions()
                .bucket(name)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|err| map("list object versions", resource(), err))?;
            let versions = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            for (key, version) in versions {
                let Some(key) = key else { continue };
                batch.push(built(
                    "empty the bucket",
                    name,
                    s3t::ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_owned))
                        .build(),
                )?);
                if batch.len() == 1000 {
                    self.delete_objects(name, std::mem::take(&mut batch))
                        .await?;
                }
            }
            if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
        }
        if !batch.is_empty() {
            self.delete_objects(name, batch).await?;
        }
        let (mut key_marker, mut upload_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .s3
                .list_multipart_uploads()
                .bucket(name)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .send()
                .await
                .map_err(|err| map("list multipart uploads", resource(), err))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                match self
                    .s3
                    .abort_multipart_upload()
                    .bucket(name)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(err) if err.code() == Some("NoSuchUpload") => {}
                    Err(err) => {
                        return Err(map(
                            "abort a multipart upload",
                            format!("{name}/{key}"),
                            err,
                        ));
                    }
                }
            }
            if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        Ok(())
    }

    async fn delete_objects(&self, name: &str, objects: Vec<s3t::ObjectIdentifier>) -> Result<()> {
        const OP: &str = "delete objects";
        let delete = built(
            OP,
            name,
            s3t::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build(),
        )?;
        let out = self
            .s3
            .delete_objects()
            .bucket(name)
            .delete(delete)
            .send()
            .await
            .map_err(|err| map(OP, format!("bucket {name}"), err))?;
        if let Some(failed) = out.errors().first() {
            return Err(Error::other(
                OP,
                format!("{name}/{}", failed.key().unwrap_or_default()),
                format!(
                    "{} ({}) and {} more; check the bucket policy and object lock, then delete \
                     again",
                    failed.message().unwrap_or("not deleted"),
                    failed.code().unwrap_or("no code"),
                    out.errors().len() - 1
                ),
            ));
        }
        Ok(())
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        const OP: &str = "delete the bucket";
        // Objects written meanwhile (a worker still finishing) make DeleteBucket fail with
        // BucketNotEmpty: empty again, a few times.
        for round in 0..3 {
            match self.empty_bucket(name).await {
                Ok(()) => {}
                Err(err) if err.is_not_found() => return Ok(()),
                Err(err) => return Err(err),
            }
            match self.s3.delete_bucket().bucket(name).send().await {
                Ok(_) => return Ok(()),
                Err(err) if err.code() == Some("NoSuchBucket") => return Ok(()),
                Err(err) if err.code() == Some("BucketNotEmpty") && round < 2 => {}
                Err(err) => return Err(map(OP, format!("bucket {name}"), err)),
            }
        }
        unreachable!("the last round returns")
    }

    /// The set-up's buckets, from the region's tag index (Resource Groups Tagging API): one
    /// listing, never a call per bucket of the account (a bucket whose policy denies the caller,
    /// common under AWS Organizations, would fail such a call).
    async fn find_buckets(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        Ok(self
            .tagged_arns(key, value, "s3")
            .await?
            .iter()
            // `arn:aws:s3:::<bucket>`; other S3 resources have a `/` (or are not `:::`).
            .filter_map(|arn| arn.rsplit_once(":::"))
            .filter(|(_, name)| !name.contains('/'))
            .map(|(_, name)| Resource {
                kind: ResourceKind::Bucket,
                name: name.to_owned(),
                id: name.to_owned(),
            })
            .collect())
    }

    /// The ARNs of the resources of `service` (`s3`, `logs`) in this region that carry the tag
    /// `key = value`, from the Resource Groups Tagging API. (Filtered by service, not by
    /// resource type: the callers tell the types apart by ARN.)
    async fn tagged_arns(&self, key: &str, value: &str, service: &str) -> Result<Vec<String>> {
        const OP: &str = "find tagged resources";
        let filter = aws_sdk_resourcegroupstagging::types::TagFilter::builder()
            .key(key)
            .values(value)
            .build();
        let mut pages = self
            .tagging
            .get_resources()
            .tag_filters(filter)
            .resource_type_filters(service)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|err| map(OP, format!("{service} resources tagged {key}={value}"), err))?;
            arns.extend(
                page.resource_tag_mapping_list()
                    .iter()
                    .filter_map(|m| m.resource_arn().map(str::to_owned)),
            );
        }
        Ok(arns)
    }
}

// ---------------------------------------------------------------------------------------------
// Repositories
// ---------------------------------------------------------------------------------------------

impl AwsProvisioner {
    async fn repository_tags(&self, arn: &str) -> Result<Tags> {
        let out = self
            .ecr
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|err| map("read repository tags", format!("repository {arn}"), err))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn put_repository_policy(&self, spec: &RepositorySpec) -> Result<()> {
        self.ecr
            .put_lifecycle_policy()
            .repository_name(&spec.name)
            .lifecycle_policy_text(repository_policy(spec.keep_images).to_string())
            .send()
            .await
            .map_err(|err| {
                map(
                    "set the repository lifecycle policy",
                    format!("repository {}", spec.name),
                    err,
                )
            })?;
        Ok(())
    }

    async fn existing_repository(
        &self,
        spec: &RepositorySpec,
        repo: &aws_sdk_ecr::types::Repository,
        tags: &Tags,
        setup: &str,
    ) -> Result<Ensured> {
        const OP: &str = "ensure the repository";
        let name = spec.name.as_str();
        let arn = repo.repository_arn().unwrap_or_default();
        let existing = self.repository_tags(arn).await?;
        let whose = owner(&existing, setup);
        if whose != Owner::Ours {
            return Err(foreign(OP, ResourceKind::Repository, name, &whose));
        }
        let mut wrote = false;
        let scans = repo
            .image_scanning_configuration()
            .is_some_and(|c| c.scan_on_push());
        if !scans {
            self.ecr
                .put_image_scanning_configuration()
                .repository_name(name)
                .image_scanning_configuration(
                    aws_sdk_ecr::types::ImageScanningConfiguration::builder()
                        .scan_on_push(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|err| map("turn on scan on push", format!("repository {name}"), err))?;
            wrote = true;
        }
        let policy = match self
            .ecr
            .get_lifecycle_policy()
            .repository_name(name)
            .send()
            .await
        {
            Ok(out) => out
                .lifecycle_policy_text()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
            Err(err) if err.code() == Some("LifecyclePolicyNotFoundException") => None,
            Err(err) => {
                return Err(map(
                    "read the repository lifecycle policy",
                    format!("repository {name}"),
                    err,
                ));
            }
        };
        if policy.as_ref() != Some(&repository_policy(spec.keep_images)) {
            self.put_repository_policy(spec).await?;
            wrote = true;
        }
        let missing = missing_tags(&existing, tags);
        if !missing.is_empty() {
            let tags = ecr_tags(OP, name, &missing)?;
            self.ecr
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|err| map("tag the repository", format!("repository {name}"), err))?;
            wrote = true;
        }
        Ok(ensured(ResourceKind::Repository, name, arn, change(wrote)))
    }

    async fn describe_repository(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_ecr::types::Repository>> {
        match self
            .ecr
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.repositories().first().cloned()),
            Err(err) if err.code() == Some("RepositoryNotFoundException") => Ok(None),
            Err(err) => Err(map(
                "describe the repository",
                format!("repository {name}"),
                err,
            )),
        }
    }

    async fn find_repositories(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        let mut found = Vec::new();
        let mut pages = self.ecr.describe_repositories().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("list repositories", "this registry".into(), err))?;
            for repo in page.repositories() {
                let (Some(name), Some(arn)) = (repo.repository_name(), repo.repository_arn())
                else {
                    continue;
                };
                let tags = match self.repository_tags(arn).await {
                    Ok(tags) => tags,
                    Err(err) if err.is_not_found() => continue,
                    Err(err) => return Err(err),
                };
                if tags.get(key).is_some_and(|v| v == value) {
                    found.push(Resource {
                        kind: ResourceKind::Repository,
                        name: name.to_owned(),
                        id: arn.to_owned(),
                    });
                }
            }
        }
        Ok(found)
    }
}

fn ecr_tags(op: &'static str, name: &str, tags: &Tags) -> Result<Vec<aws_sdk_ecr::types::Tag>> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_ecr::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|err| Error::other(op, name, err))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------------

fn ecs_tags(tags: &Tags) -> Vec<aws_sdk_ecs::types::Tag> {
    tags.iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
        .collect()
}

fn ecs_tag_map(tags: &[aws_sdk_ecs::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// ECS's answer when its service-linked role is missing or not yet usable.
fn slr_missing<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("InvalidParameterException")
        && err
            .message()
            .is_some_and(|m| m.contains("service linked role"))
}

fn slr_error(cluster: &str) -> Error {
    Error::AccessDenied {
        op: "create the cluster",
        resource: format!("cluster {cluster}"),
        message: "ECS's service-linked role (AWSServiceRoleForECS) is missing and could not be \
                  created: ask an administrator to run `aws iam create-service-linked-role \
                  --aws-service-name ecs.amazonaws.com` once for the account (or to allow \
                  iam:CreateServiceLinkedRole for ecs.amazonaws.com), then run set-up again"
            .into(),
    }
}

fn default_strategy(
    op: &'static str,
    name: &str,
) -> Result<aws_sdk_ecs::types::CapacityProviderStrategyItem> {
    aws_sdk_ecs::types::CapacityProviderStrategyItem::builder()
        .capacity_provider(CAPACITY_PROVIDERS[0])
        .weight(1)
        .build()
        .map_err(|err| Error::other(op, name, err))
}

impl AwsProvisioner {
    async fn describe_cluster(&self, name: &str) -> Result<Option<aws_sdk_ecs::types::Cluster>> {
        let out = self
            .ecs
            .describe_clusters()
            .clusters(name)
            .include(aws_sdk_ecs::types::ClusterField::Tags)
            .send()
            .await
            .map_err(|err| map("describe the cluster", format!("cluster {name}"), err))?;
        Ok(out
            .clusters()
            .iter()
            .find(|c| c.status() == Some("ACTIVE"))
            .cloned())
    }

    /// Creates ECS's service-linked role (`AWSServiceRoleForECS`) unless the account has it: a
    /// cluster with capacity providers needs it, and an account that has never used ECS lacks it
    /// ("Unable to assume the service linked role"). A caller who may not create it goes on:
    /// the role may exist, and if not, the cluster call says so (see [`slr_missing`]). Returns
    /// how long to wait for ECS to be able to use it: a while after creating it, else nothing.
    async fn ensure_ecs_service_linked_role(&self) -> Result<Duration> {
        const OP: &str = "create ECS's service-linked role";
        match self
            .iam
            .create_service_linked_role()
            .aws_service_name(ECS_SERVICE)
            .send()
            .await
        {
            Ok(_) => Ok(SETTLE),
            // IAM: "Service role name AWSServiceRoleForECS has been taken in this account"
            Err(err)
                if err.code() == Some("EntityAlreadyExists")
                    || (err.code() == Some("InvalidInput")
                        && err.message().is_some_and(|m| m.contains("has been taken"))) =>
            {
                Ok(Duration::ZERO)
            }
            Err(err) => match map(OP, "role AWSServiceRoleForECS".into(), err) {
                Error::AccessDenied { .. } => Ok(Duration::ZERO),
                other => Err(other),
            },
        }
    }

    async fn existing_cluster(
        &self,
        name: &str,
        cluster: &aws_sdk_ecs::types::Cluster,
        tags: &Tags,
        setup: &str,
    ) -> Result<Ensured> {
        const OP: &str = "ensure the cluster";
        let existing = ecs_tag_map(cluster.tags());
        let whose = owner(&existing, setup);
        if whose != Owner::Ours {
            return Err(foreign(OP, ResourceKind::Cluster, name, &whose));
        }
        let arn = cluster.cluster_arn().unwrap_or(name);
        let mut wrote = false;
        let providers = cluster.capacity_providers();
        let has_providers = CAPACITY_PROVIDERS
            .iter()
            .all(|p| providers.iter().any(|q| q == p));
        let strategy = cluster.default_capacity_provider_strategy();
        let default_ok = matches!(strategy, [only]
            if only.capacity_provider() == CAPACITY_PROVIDERS[0] && only.weight() == 1);
        if !has_providers || !default_ok {
            // The call replaces the list: keep providers the cluster already has.
            let mut all: Vec<String> = providers.to_vec();
            for p in CAPACITY_PROVIDERS {
                if !all.iter().any(|q| q == p) {
                    all.push(p.to_owned());
                }
            }
            let settle = self.ensure_ecs_service_linked_role().await?;
            let strategy = default_strategy(OP, name)?;
            until_unblocked(settle, || async {
                match self
                    .ecs
                    .put_cluster_capacity_providers()
                    .cluster(arn)
                    .set_capacity_providers(Some(all.clone()))
                    .default_capacity_provider_strategy(strategy.clone())
                    .send()
                    .await
                {
                    Ok(_) => Ok(Step::Done(())),
                    Err(err) if slr_missing(&err) => Ok(Step::Blocked(slr_error(name))),
                    Err(err) => Err(map(
                        "set capacity providers",
                        format!("cluster {name}"),
                        err,
                    )),
                }
            })
            .await?;
            wrote = true;
        }
        let missing = missing_tags(&existing, tags);
        if !missing.is_empty() {
            self.ecs
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(ecs_tags(&missing)))
                .send()
                .await
                .map_err(|err| map("tag the cluster", format!("cluster {name}"), err))?;
            wrote = true;
        }
        Ok(ensured(ResourceKind::Cluster, name, arn, change(wrote)))
    }

    async fn delete_cluster(&self, cluster: &str) -> Result<()> {
        const OP: &str = "delete the cluster";
        let resource = || format!("cluster {cluster}");
        // Stop what still runs.
        let mut pages = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .into_paginator()
            .send();
        let mut tasks = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => tasks.extend(page.task_arns().iter().cloned()),
                Err(err) if err.code() == Some("ClusterNotFoundException") => return Ok(()),
                Err(err) => return Err(map("list the cluster's tasks", resource(), err)),
            }
        }
        for task in &tasks {
            match self
                .ecs
                .stop_task()
                .cluster(cluster)
                .task(task)
                .reason("starburst: the set-up is being deleted")
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if err.code() == Some("InvalidParameterException") => {} // stopped meanwhile
                Err(err) => return Err(map("stop a task", task.clone(), err)),
            }
        }
        let wait = self.wait.unwrap_or(DEFAULT_WAIT);
        until_unblocked(wait, || async {
            match self.ecs.delete_cluster().cluster(cluster).send().await {
                Ok(_) => Ok(Step::Done(())),
                Err(err) if err.code() == Some("ClusterNotFoundException") => Ok(Step::Done(())),
                Err(err) if err.code() == Some("ClusterContainsTasksException") => {
                    Ok(Step::Blocked(Error::other(
                        OP,
                        resource(),
                        format!(
                            "its tasks were still stopping after {} s; delete again once they \
                             have stopped",
                            wait.as_secs()
                        ),
                    )))
                }
                Err(err) if err.code() == Some("ClusterContainsServicesException") => {
                    Err(Error::other(
                        OP,
                        resource(),
                        "it has services, which starburst does not create; delete them \
                         (aws ecs delete-service --force), then delete again",
                    ))
                }
                Err(err) if err.code() == Some("ClusterContainsContainerInstancesException") => {
                    Err(Error::other(
                        OP,
                        resource(),
                        "it has registered container instances, which starburst does not \
                         create; deregister them, then delete again",
                    ))
                }
                Err(err) => Err(map(OP, resource(), err)),
            }
        })
        .await
    }

    async fn find_clusters(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        let mut arns = Vec::new();
        let mut pages = self.ecs.list_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("list clusters", "this region".into(), err))?;
            arns.extend(page.cluster_arns().iter().cloned());
        }
        let mut found = Vec::new();
        for chunk in arns.chunks(100) {
            let out = self
                .ecs
                .describe_clusters()
                .set_clusters(Some(chunk.to_vec()))
                .include(aws_sdk_ecs::types::ClusterField::Tags)
                .send()
                .await
                .map_err(|err| map("describe clusters", "this region".into(), err))?;
            for cluster in out.clusters() {
                if cluster.status() != Some("ACTIVE") {
                    continue;
                }
                let tags = ecs_tag_map(cluster.tags());
                if let (Some(name), Some(arn), true) = (
                    cluster.cluster_name(),
                    cluster.cluster_arn(),
                    tags.get(key).is_some_and(|v| v == value),
                ) {
                    found.push(Resource {
                        kind: ResourceKind::Cluster,
                        name: name.to_owned(),
                        id: arn.to_owned(),
                    });
                }
            }
        }
        Ok(found)
    }
}

// ---------------------------------------------------------------------------------------------
// Log groups
// ---------------------------------------------------------------------------------------------

/// A log group's ARN without the `:*` DescribeLogGroups appends to `arn`.
fn log_group_arn(group: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Option<String> {
    group
        .log_group_arn()
        .map(str::to_owned)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_owned()))
}

impl AwsProvisioner {
    async fn describe_log_group(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>> {
        let mut pages = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|err| map("describe log groups", format!("log group {name}"), err))?;
            if let Some(found) = page
                .log_groups()
                .iter()
                .find(|g| g.log_group_name() == Some(name))
            {
                return Ok(Some(found.clone()));
            }
        }
        Ok(None)
    }

    async fn log_group_tags(&self, arn: &str) -> Result<Tags> {
        let out = self
            .logs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|err| map("read log group tags", format!("log group {arn}"), err))?;
        Ok(out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn put_retention(&self, spec: &LogGroupSpec) -> Result<()> {
        self.logs
            .put_retention_policy()
            .log_group_name(&spec.name)
            .retention_in_days(spec.retention_days as i32)
            .send()
            .await
            .map_err(|err| {
                map(
                    "set the log retention",
                    format!(
                        "log group {} ({} days; the service accepts 1, 3, 5, 7, 14, 30, 60, 90, \
                         ...)",
                        spec.name, spec.retention_days
                    ),
                    err,
                )
            })?;
        Ok(())
    }

    async fn existing_log_group(
        &self,
        spec: &LogGroupSpec,
        group: &aws_sdk_cloudwatchlogs::types::LogGroup,
        tags: &Tags,
        setup: &str,
    ) -> Result<Ensured> {
        const OP: &str = "ensure the log group";
        let name = spec.name.as_str();
        let arn = log_group_arn(group).ok_or_else(|| {
            Error::other(OP, format!("log group {name}"), "described without an ARN")
        })?;
        let existing = self.log_group_tags(&arn).await?;
        let whose = owner(&existing, setup);
        if whose != Owner::Ours {
            return Err(foreign(OP, ResourceKind::LogGroup, name, &whose));
        }
        let mut wrote = false;
        if group.retention_in_days() != Some(spec.retention_days as i32) {
            self.put_retention(spec).await?;
            wrote = true;
        }
        let missing = missing_tags(&existing, tags);
        if !missing.is_empty() {
            self.logs
                .tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(missing.into_iter().collect()))
                .send()
                .await
                .map_err(|err| map("tag the log group", format!("log group {name}"), err))?;
            wrote = true;
        }
        Ok(ensured(ResourceKind::LogGroup, name, &arn, change(wrote)))
    }

    /// The set-up's log groups, from the region's tag index: one listing, not a tag read per
    /// log group of the region (thousands in large accounts, then throttling).
    async fn find_log_groups(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        Ok(self
            .tagged_arns(key, value, "logs")
            .await?
            .into_iter()
            .filter_map(|arn| {
                let arn = arn.trim_end_matches(":*").to_owned();
                let name = arn.split_once(":log-group:")?.1.to_owned();
                Some(Resource {
                    kind: ResourceKind::LogGroup,
                    name,
                    id: arn,
                })
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Security groups
// ---------------------------------------------------------------------------------------------

fn ec2_tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

impl AwsProvisioner {
    /// This set-up's group `found`, its inbound rules revoked and missing tags added.
    async fn existing_group(
        &self,
        vpc: &str,
        name: &str,
        found: &aws_sdk_ec2::types::SecurityGroup,
        tags: &Tags,
        setup: &str,
    ) -> Result<Ensured> {
        let named = network::group(vpc, name);
        let existing = ec2_tag_map(found.tags());
        let whose = owner(&existing, setup);
        if whose != Owner::Ours {
            return Err(foreign(
                network::OP,
                ResourceKind::SecurityGroup,
                &format!("{name} in VPC {vpc}"),
                &whose,
            ));
        }
        let id = found.group_id().ok_or_else(|| {
            Error::other(
                "describe security groups",
                &named,
                "described without its id",
            )
        })?;
        let mut wrote = false;
        if !found.ip_permissions().is_empty() {
            // Workers accept no connections; whatever let something in goes.
            self.ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(found.ip_permissions().to_vec()))
                .send()
                .await
                .map_err(|err| map("revoke inbound rules", named.clone(), err))?;
            wrote = true;
        }
        let missing = missing_tags(&existing, tags);
        if !missing.is_empty() {
            self.ec2
                .create_tags()
                .resources(id)
                .set_tags(Some(
                    missing
                        .iter()
                        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .send()
                .await
                .map_err(|err| map("tag the security group", named.clone(), err))?;
            wrote = true;
        }
        Ok(ensured(
            ResourceKind::SecurityGroup,
            name,
            id,
            change(wrote),
        ))
    }

    async fn delete_group(&self, id: &str) -> Result<()> {
        const OP: &str = "delete the security group";
        let wait = self.wait.unwrap_or(ENI_WAIT);
        until_unblocked(wait, || async {
            match self.ec2.delete_security_group().group_id(id).send().await {
                Ok(_) => Ok(Step::Done(())),
                Err(err)
                    if matches!(
                        err.code(),
                        Some("InvalidGroup.NotFound" | "InvalidGroupId.NotFound")
                    ) =>
                {
                    Ok(Step::Done(()))
                }
                Err(err) if err.code() == Some("DependencyViolation") => {
                    // Network interfaces of stopped tasks are released minutes later: worth
                    // waiting for. Anything else using the group will not go away by itself.
                    let users = self.group_users(id).await?;
                    if let Some(other) = users.iter().find(|u| !u.of_ecs_task) {
                        return Err(Error::other(
                            OP,
                            format!("security group {id}"),
                            format!(
                                "it is used by network interface {} ({}), which is not a \
                                 starburst worker's; remove the group from it (or delete it), \
                                 then run teardown again",
                                other.id, other.description
                            ),
                        ));
                    }
                    Ok(Step::Blocked(Error::other(
                        OP,
                        format!("security group {id}"),
                        format!(
                            "still in use after {} s by the network interfaces of {} stopped \
                             task(s), which Fargate has not released yet; run teardown again \
                             later",
                            wait.as_secs(),
                            users.len()
                        ),
                    )))
                }
                Err(err) => Err(map(OP, format!("security group {id}"), err)),
            }
        })
        .await
    }

    /// The network interfaces that use security group `id`.
    async fn group_users(&self, id: &str) -> Result<Vec<GroupUser>> {
        let mut users = Vec::new();
        let mut pages = self
            .ec2
            .describe_network_interfaces()
            .filters(network::filter("group-id", id))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| {
                map(
                    "list the network interfaces of a security group",
                    format!("security group {id}"),
                    err,
                )
            })?;
            for eni in page.network_interfaces() {
                let description = eni.description().unwrap_or_default().to_owned();
                users.push(GroupUser {
                    id: eni.network_interface_id().unwrap_or_default().to_owned(),
                    // ECS describes a task's interface by its attachment's ARN.
                    of_ecs_task: is_ecs_attachment(&description),
                    description,
                });
            }
        }
        Ok(users)
    }

    async fn find_groups(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        let mut found = Vec::new();
        let mut pages = self
            .ec2
            .describe_security_groups()
            .filters(network::filter(&format!("tag:{key}"), value))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|err| map("list security groups", "this region".into(), err))?;
            for group in page.security_groups() {
                // The filter already matched; check again in case an emulator ignores it.
                let tags = ec2_tag_map(group.tags());
                if let (Some(name), Some(id), true) = (
                    group.group_name(),
                    group.group_id(),
                    tags.get(key).is_some_and(|v| v == value),
                ) {
                    found.push(Resource {
                        kind: ResourceKind::SecurityGroup,
                        name: name.to_owned(),
                        id: id.to_owned(),
                    });
                }
            }
        }
        Ok(found)
    }
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

fn iam_tags(op: &'static str, name: &str, tags: &Tags) -> Result<Vec<aws_sdk_iam::types::Tag>> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|err| Error::other(op, name, err))
        })
        .collect()
}

/// The role name in a role ARN (`arn:aws:iam::1:role/path/name`), or `id` itself.
fn role_name(id: &str) -> &str {
    if id.starts_with("arn:") {
        id.rsplit('/').next().unwrap_or(id)
    } else {
        id
    }
}

impl AwsProvisioner {
    async fn role_tags(&self, name: &str) -> Result<Tags> {
        let mut tags = Tags::new();
        let mut pages = self
            .iam
            .list_role_tags()
            .role_name(name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("read role tags", format!("role {name}"), err))?;
            tags.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned())),
            );
        }
        Ok(tags)
    }

    async fn put_role_policy(&self, spec: &RoleSpec) -> Result<()> {
        self.iam
            .put_role_policy()
            .role_name(&spec.name)
            .policy_name(&spec.policy_name)
            .policy_document(&spec.policy)
            .send()
            .await
            .map_err(|err| {
                map(
                    "put the role's inline policy",
                    format!("role {} policy {}", spec.name, spec.policy_name),
                    err,
                )
            })?;
        Ok(())
    }

    async fn existing_role(
        &self,
        spec: &RoleSpec,
        role: &aws_sdk_iam::types::Role,
        tags: &Tags,
        setup: &str,
    ) -> Result<Ensured> {
        const OP: &str = "ensure the role";
        let name = spec.name.as_str();
        let resource = || format!("role {name}");
        let existing = self.role_tags(name).await?;
        let whose = owner(&existing, setup);
        if whose != Owner::Ours {
            return Err(foreign(OP, ResourceKind::Role, name, &whose));
        }
        let mut wrote = false;
        let trust = trust_policy(&spec.service);
        if role.assume_role_policy_document().and_then(iam_document) != Some(trust.clone()) {
            self.iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(trust.to_string())
                .send()
                .await
                .map_err(|err| map("update the role's trust policy", resource(), err))?;
            wrote = true;
        }
        if role.description().unwrap_or_default() != spec.description {
            self.iam
                .update_role()
                .role_name(name)
                .description(&spec.description)
                .send()
                .await
                .map_err(|err| map("update the role's description", resource(), err))?;
            wrote = true;
        }
        let wanted: serde_json::Value = serde_json::from_str(&spec.policy).map_err(|err| {
            Error::invalid(OP, format!("the policy of role {name} is not JSON: {err}"))
        })?;
        let current = match self
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(&spec.policy_name)
            .send()
            .await
        {
            Ok(out) => iam_document(out.policy_document()),
            Err(err) if err.code() == Some("NoSuchEntity") => None,
            Err(err) => return Err(map("read the role's inline policy", resource(), err)),
        };
        if current.as_ref() != Some(&wanted) {
            self.put_role_policy(spec).await?;
            wrote = true;
        }
        let missing = missing_tags(&existing, tags);
        if !missing.is_empty() {
            self.iam
                .tag_role()
                .role_name(name)
                .set_tags(Some(iam_tags(OP, name, &missing)?))
                .send()
                .await
                .map_err(|err| map("tag the role", resource(), err))?;
            wrote = true;
        }
        Ok(ensured(ResourceKind::Role, name, role.arn(), change(wrote)))
    }

    async fn get_role(&self, name: &str) -> Result<Option<aws_sdk_iam::types::Role>> {
        match self.iam.get_role().role_name(name).send().await {
            Ok(out) => Ok(out.role().cloned()),
            Err(err) if err.code() == Some("NoSuchEntity") => Ok(None),
            Err(err) => Err(map("read the role", format!("role {name}"), err)),
        }
    }

    /// Deregisters and deletes the worker task definitions (family prefix
    /// [`FAMILY_PREFIX`]) that name role `role` as their execution or task role, so teardown
    /// leaves none behind: ECS keeps a deregistered definition (INACTIVE) until
    /// DeleteTaskDefinitions, which takes up to 10 at a time.
    async fn retire_task_definitions_of(&self, role: &str) -> Result<()> {
        const OP: &str = "delete the workers' task definitions";
        let resource = || format!("task definitions {FAMILY_PREFIX}-* of role {role}");
        // ListTaskDefinitions' familyPrefix is a whole family name; the families' listing
        // takes a prefix.
        let mut families = Vec::new();
        let mut pages = self
            .ecs
            .list_task_definition_families()
            .family_prefix(FAMILY_PREFIX)
            .status(TaskDefinitionFamilyStatus::All)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map(OP, resource(), err))?;
            families.extend(page.families().iter().cloned());
        }
        let mut arns = Vec::new();
        for family in &families {
            for status in [TaskDefinitionStatus::Active, TaskDefinitionStatus::Inactive] {
                let mut pages = self
                    .ecs
                    .list_task_definitions()
                    .family_prefix(family)
                    .status(status)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|err| map(OP, resource(), err))?;
                    arns.extend(page.task_definition_arns().iter().cloned());
                }
            }
        }
        arns.sort();
        arns.dedup();
        let names_role = |arn: Option<&str>| {
            arn.is_some_and(|a| a.rsplit_once('/').is_some_and(|(_, name)| name == role))
        };
        let mut retire = Vec::new();
        for arn in arns {
            let out = match self
                .ecs
                .describe_task_definition()
                .task_definition(&arn)
                .send()
                .await
            {
                Ok(out) => out,
                Err(err) if err.code() == Some("ClientException") => continue, // gone meanwhile
                Err(err) => return Err(map(OP, resource(), err)),
            };
            let Some(td) = out.task_definition() else {
                continue;
            };
            if !(names_role(td.execution_role_arn()) || names_role(td.task_role_arn())) {
                continue;
            }
            if td.status() == Some(&TaskDefinitionStatus::Active) {
                self.ecs
                    .deregister_task_definition()
                    .task_definition(&arn)
                    .send()
                    .await
                    .map_err(|err| map(OP, resource(), err))?;
            }
            retire.push(arn);
        }
        for batch in retire.chunks(10) {
            let out = self
                .ecs
                .delete_task_definitions()
                .set_task_definitions(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|err| map(OP, resource(), err))?;
            if let Some(failure) = out.failures().first() {
                return Err(Error::other(
                    OP,
                    resource(),
                    format!(
                        "ECS did not delete {}: {}",
                        failure.arn().unwrap_or("a task definition"),
                        failure.reason().unwrap_or("no reason given")
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn delete_role(&self, name: &str) -> Result<()> {
        // What names the role goes first: teardown leaves no task definition behind.
        self.retire_task_definitions_of(name).await?;
        let resource = || format!("role {name}");
        let gone = |err: &Error| err.is_not_found();
        let steps = async {
            let mut inline = Vec::new();
            let mut pages = self
                .iam
                .list_role_policies()
                .role_name(name)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| map("list inline policies", resource(), err))?;
                inline.extend(page.policy_names().iter().cloned());
            }
            for policy in inline {
                unless_gone(
                    self.iam
                        .delete_role_policy()
                        .role_name(name)
                        .policy_name(&policy)
                        .send()
                        .await,
                    "delete an inline policy",
                    || format!("role {name} policy {policy}"),
                )?;
            }
            let mut attached = Vec::new();
            let mut pages = self
                .iam
                .list_attached_role_policies()
                .role_name(name)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| map("list attached policies", resource(), err))?;
                attached.extend(
                    page.attached_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn())
                        .map(str::to_owned),
                );
            }
            for policy in attached {
                unless_gone(
                    self.iam
                        .detach_role_policy()
                        .role_name(name)
                        .policy_arn(&policy)
                        .send()
                        .await,
                    "detach a policy",
                    || format!("role {name} policy {policy}"),
                )?;
            }
            let mut profiles = Vec::new();
            let mut pages = self
                .iam
                .list_instance_profiles_for_role()
                .role_name(name)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| map("list instance profiles", resource(), err))?;
                profiles.extend(
                    page.instance_profiles()
                        .iter()
                        .map(|p| p.instance_profile_name().to_owned()),
                );
            }
            for profile in profiles {
                unless_gone(
                    self.iam
                        .remove_role_from_instance_profile()
                        .role_name(name)
                        .instance_profile_name(&profile)
                        .send()
                        .await,
                    "remove the role from an instance profile",
                    || format!("role {name} instance profile {profile}"),
                )?;
            }
            self.iam
                .delete_role()
                .role_name(name)
                .send()
                .await
                .map_err(|err| map("delete the role", resource(), err))?;
            Ok(())
        };
        match steps.await {
            Err(err) if gone(&err) => Ok(()),
            other => other,
        }
    }

    /// The set-up's roles. IAM is global and has no regional tag index, and reading every
    /// role's tags costs a call per role; set-up names its roles after the tag value (`<set-up
    /// id>-execution`), so only roles whose name starts with it are read.
    async fn find_roles(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        let mut roles = Vec::new();
        let mut pages = self.iam.list_roles().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("list roles", "this account".into(), err))?;
            roles.extend(
                page.roles()
                    .iter()
                    .filter(|r| r.role_name().starts_with(value))
                    .map(|r| (r.role_name().to_owned(), r.arn().to_owned())),
            );
        }
        let mut found = Vec::new();
        for (name, arn) in roles {
            let tags = match self.role_tags(&name).await {
                Ok(tags) => tags,
                Err(err) if err.is_not_found() => continue,
                Err(err) => return Err(err),
            };
            if tags.get(key).is_some_and(|v| v == value) {
                found.push(Resource {
                    kind: ResourceKind::Role,
                    name,
                    id: arn,
                });
            }
        }
        Ok(found)
    }
}

// ---------------------------------------------------------------------------------------------
// Build projects (CodeBuild)
// ---------------------------------------------------------------------------------------------

/// How a build project of `spec` is configured: an x86_64 Linux build host with Docker
/// (privileged), the set-up's bucket as its default source, no artifacts (builds push images),
/// logs in the set-up's log group. Each build overrides the architecture, source and build
/// steps ([`crate::CodeBuildBuilder`]).
struct ProjectSettings {
    description: String,
    source: aws_sdk_codebuild::types::ProjectSource,
    artifacts: aws_sdk_codebuild::types::ProjectArtifacts,
    environment: aws_sdk_codebuild::types::ProjectEnvironment,
    logs: aws_sdk_codebuild::types::LogsConfig,
    role: String,
    timeout: i32,
}

impl ProjectSettings {
    fn of(spec: &BuildProjectSpec) -> Result<Self> {
        use aws_sdk_codebuild::types as cb;
        const OP: &str = "ensure the build project";
        let name = spec.name.as_str();
        Ok(Self {
            description: spec.description.clone(),
            source: built(
                OP,
                name,
                cb::ProjectSource::builder()
                    .r#type(cb::SourceType::S3)
                    .location(&spec.source_location)
                    .build(),
            )?,
            artifacts: built(
                OP,
                name,
                cb::ProjectArtifacts::builder()
                    .r#type(cb::ArtifactsType::NoArtifacts)
                    .build(),
            )?,
            environment: built(
                OP,
                name,
                cb::ProjectEnvironment::builder()
                    .r#type(cb::EnvironmentType::LinuxContainer)
                    .image(build_image(starburst_cloud::Arch::X86_64))
                    .compute_type(cb::ComputeType::BuildGeneral1Medium)
                    .privileged_mode(true)
                    .build(),
            )?,
            logs: cb::LogsConfig::builder()
                .cloud_watch_logs(built(
                    OP,
                    name,
                    cb::CloudWatchLogsConfig::builder()
                        .status(cb::LogsConfigStatusType::Enabled)
                        .group_name(&spec.log_group)
                        .stream_name(&spec.log_stream_prefix)
                        .build(),
                )?)
                .build(),
            role: spec.role_arn.clone(),
            timeout: i32::try_from(spec.timeout_minutes).unwrap_or(i32::MAX),
        })
    }

    /// True when `project` is configured as these settings say.
    fn matches(&self, project: &aws_sdk_codebuild::types::Project) -> bool {
        let env = project.environment();
        let logs = project.logs_config().and_then(|l| l.cloud_watch_logs());
        let want_logs = self.logs.cloud_watch_logs();
        project.description().unwrap_or_default() == self.description
            && project.source().and_then(|s| s.location()) == self.source.location()
            && project.source().map(|s| s.r#type()) == Some(self.source.r#type())
            && env.map(|e| e.image()) == Some(self.environment.image())
            && env.map(|e| e.r#type()) == Some(self.environment.r#type())
            && env.map(|e| e.compute_type()) == Some(self.environment.compute_type())
            && env.and_then(|e| e.privileged_mode()) == Some(true)
            && logs.and_then(|l| l.group_name()) == want_logs.and_then(|l| l.group_name())
            && logs.and_then(|l| l.stream_name()) == want_logs.and_then(|l| l.stream_name())
            && project.service_role() == Some(self.role.as_str())
            && project.timeout_in_minutes() == Some(self.timeout)
    }
}

fn codebuild_tags(tags: &Tags) -> Vec<aws_sdk_codebuild::types::Tag> {
    tags.iter()
        .map(|(k, v)| {
            aws_sdk_codebuild::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

fn tags_of_project(project: &aws_sdk_codebuild::types::Project) -> Tags {
    project
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

/// True when CodeBuild refused a role it cannot assume yet: IAM roles take seconds to be
/// usable by a service after they are created.
fn role_not_yet_assumable(message: &str) -> bool {
    message.contains("not authorized to perform: sts:AssumeRole")
}

impl AwsProvisioner {
    async fn build_projects(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<aws_sdk_codebuild::types::Project>> {
        let mut projects = Vec::new();
        // BatchGetProjects takes at most 100 names.
        for chunk in names.chunks(100) {
            let out = self
                .codebuild
                .batch_get_projects()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|err| map("read build projects", chunk.join(", "), err))?;
            projects.extend(out.projects().iter().cloned());
        }
        Ok(projects)
    }

    /// The set-up's build projects: listed by name (CodeBuild has no index by tag; set-up names
    /// its project after the set-up id), then their tags read in batches.
    async fn find_build_projects(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        let mut names = Vec::new();
        let mut pages = self.codebuild.list_projects().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("list build projects", "this region".into(), err))?;
            names.extend(
                page.projects()
                    .iter()
                    .filter(|n| n.starts_with(value))
                    .cloned(),
            );
        }
        Ok(self
            .build_projects(names)
            .await?
            .iter()
            .filter(|p| tags_of_project(p).get(key).is_some_and(|v| v == value))
            .map(|p| Resource {
                kind: ResourceKind::BuildProject,
                name: p.name().unwrap_or_default().to_owned(),
                id: p.arn().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn create_build_project(
        &self,
        spec: &BuildProjectSpec,
        settings: &ProjectSettings,
        tags: &Tags,
    ) -> Result<String> {
        const OP: &str = "create the build project";
        let name = spec.name.as_str();
        let created = retry_while(
            SETTLE,
            |err: &SdkError<_, HttpResponse>| role_not_yet_assumable(err.message().unwrap_or("")),
            || {
                self.codebuild
                    .create_project()
                    .name(name)
                    .description(&settings.description)
                    .source(settings.source.clone())
                    .artifacts(settings.artifacts.clone())
                    .environment(settings.environment.clone())
                    .logs_config(settings.logs.clone())
                    .service_role(&settings.role)
                    .timeout_in_minutes(settings.timeout)
                    .set_tags(Some(codebuild_tags(tags)))
                    .send()
            },
        )
        .await
        .map_err(|err| map(OP, format!("build project {name}"), err))?;
        Ok(created
            .project()
            .and_then(|p| p.arn())
            .unwrap_or_default()
            .to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Provisioner for AwsProvisioner {
    async fn account(&self) -> Result<Account> {
        self.account
            .get_or_try_init(|| self.caller())
            .await
            .cloned()
    }

    async fn ensure_bucket(&self, spec: &BucketSpec, tags: &Tags) -> Result<Ensured> {
        const OP: &str = "ensure the bucket";
        let setup = setup_id(OP, tags)?;
        if spec.expire_days == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "bucket {}: objects expire after at least 1 day, not 0",
                    spec.name
                ),
            ));
        }
        if self.owns_bucket(&spec.name).await? {
            return self.existing_bucket(spec, tags, setup).await;
        }
        let region = self.region(OP)?;
        let mut create = self.s3.create_bucket().bucket(&spec.name);
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                s3t::CreateBucketConfiguration::builder()
                    .location_constraint(s3t::BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {}
            // Created meanwhile by this account (another run of this set-up).
            Err(err) if err.code() == Some("BucketAlreadyOwnedByYou") => {
                return self.existing_bucket(spec, tags, setup).await;
            }
            Err(err) if err.code() == Some("BucketAlreadyExists") => {
                return Err(Error::already_exists(
                    OP,
                    format!(
                        "bucket {} (bucket names are global and another AWS account owns this \
                         one; choose another bucket name)",
                        spec.name
                    ),
                ));
            }
            Err(err) => {
                return Err(map(
                    "create the bucket",
                    format!("bucket {}", spec.name),
                    err,
                ));
            }
        }
        // Tags first: if what follows fails, the next run finds the bucket as this set-up's
        // and completes its settings. Right after CreateBucket, S3 may still answer
        // NoSuchBucket for a moment.
        once_visible(|| self.put_bucket_tags(&spec.name, tags)).await?;
        once_visible(|| self.configure_bucket(spec, false)).await?;
        Ok(ensured(
            ResourceKind::Bucket,
            &spec.name,
            &spec.name,
            Change::Created,
        ))
    }

    async fn ensure_repository(&self, spec: &RepositorySpec, tags: &Tags) -> Result<Ensured> {
        const OP: &str = "ensure the repository";
        let setup = setup_id(OP, tags)?;
        let name = spec.name.as_str();
        if spec.keep_images == 0 {
            return Err(Error::invalid(
                OP,
                format!("repository {name}: keep at least 1 image, not 0"),
            ));
        }
        if let Some(repo) = self.describe_repository(name).await? {
            return self.existing_repository(spec, &repo, tags, setup).await;
        }
        let created = self
            .ecr
            .create_repository()
            .repository_name(name)
            .image_scanning_configuration(
                aws_sdk_ecr::types::ImageScanningConfiguration::builder()
                    .scan_on_push(true)
                    .build(),
            )
            .set_tags(Some(ecr_tags(OP, name, tags)?))
            .send()
            .await;
        let arn = match created {
            Ok(out) => out
                .repository()
                .and_then(|r| r.repository_arn())
                .unwrap_or_default()
                .to_owned(),
            Err(err) if err.code() == Some("RepositoryAlreadyExistsException") => {
                return match self.describe_repository(name).await? {
                    Some(repo) => self.existing_repository(spec, &repo, tags, setup).await,
                    None => Err(map(
                        "create the repository",
                        format!("repository {name}"),
                        err,
                    )),
                };
            }
            Err(err) => {
                return Err(map(
                    "create the repository",
                    format!("repository {name}"),
                    err,
                ));
            }
        };
        self.put_repository_policy(spec).await?;
        Ok(ensured(
            ResourceKind::Repository,
            name,
            &arn,
            Change::Created,
        ))
    }

    async fn ensure_cluster(&self, name: &str, tags: &Tags) -> Result<Ensured> {
        const OP: &str = "ensure the cluster";
        let setup = setup_id(OP, tags)?;
        if let Some(cluster) = self.describe_cluster(name).await? {
            return self.existing_cluster(name, &cluster, tags, setup).await;
        }
        // Not there, or INACTIVE (deleted): create it (again).
        let settle = self.ensure_ecs_service_linked_role().await?;
        let strategy = default_strategy(OP, name)?;
        let out = until_unblocked(settle, || async {
            match self
                .ecs
                .create_cluster()
                .cluster_name(name)
                .set_capacity_providers(Some(
                    CAPACITY_PROVIDERS.iter().map(|p| (*p).to_owned()).collect(),
                ))
                .default_capacity_provider_strategy(strategy.clone())
                .set_tags(Some(ecs_tags(tags)))
                .send()
                .await
            {
                Ok(out) => Ok(Step::Done(out)),
                // A role created moments ago is not yet usable by ECS.
                Err(err) if slr_missing(&err) => Ok(Step::Blocked(slr_error(name))),
                Err(err) => Err(map("create the cluster", format!("cluster {name}"), err)),
            }
        })
        .await?;
        let arn = out
            .cluster()
            .and_then(|c| c.cluster_arn())
            .unwrap_or(name)
            .to_owned();
        Ok(ensured(ResourceKind::Cluster, name, &arn, Change::Created))
    }

    async fn ensure_log_group(&self, spec: &LogGroupSpec, tags: &Tags) -> Result<Ensured> {
        const OP: &str = "ensure the log group";
        let setup = setup_id(OP, tags)?;
        let name = spec.name.as_str();
        if let Some(group) = self.describe_log_group(name).await? {
            return self.existing_log_group(spec, &group, tags, setup).await;
        }
        match self
            .logs
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(
                tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ))
            .send()
            .await
        {
            Ok(_) => {}
            Err(err) if err.code() == Some("ResourceAlreadyExistsException") => {
                return match self.describe_log_group(name).await? {
                    Some(group) => self.existing_log_group(spec, &group, tags, setup).await,
                    None => Err(map(
                        "create the log group",
                        format!("log group {name}"),
                        err,
                    )),
                };
            }
            Err(err) => {
                return Err(map(
                    "create the log group",
                    format!("log group {name}"),
                    err,
                ));
            }
        }
        once_visible(|| self.put_retention(spec)).await?;
        // A new log group can be missing from DescribeLogGroups for a moment.
        let group = once_visible(|| async {
            self.describe_log_group(name).await?.ok_or_else(|| {
                Error::not_found("describe the new log group", format!("log group {name}"))
            })
        })
        .await?;
        let arn = log_group_arn(&group).ok_or_else(|| {
            Error::other(OP, format!("log group {name}"), "described without an ARN")
        })?;
        Ok(ensured(ResourceKind::LogGroup, name, &arn, Change::Created))
    }

    async fn ensure_network(
        &self,
        request: &NetworkRequest,
        tags: &Tags,
    ) -> Result<EnsuredNetwork> {
        let setup = setup_id(network::OP, tags)?;
        let name = request.security_group_name.trim();
        if name.is_empty() {
            return Err(Error::invalid(
                network::OP,
                "the security group name is empty",
            ));
        }
        let (vpc, subnets) = self.network.locate(request).await?;
        let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let group = match self
            .network
            .find_or_create_group(&vpc, name, &pairs)
            .await?
        {
            Group::Created(id) => ensured(ResourceKind::SecurityGroup, name, &id, Change::Created),
            Group::Found(found) => self.existing_group(&vpc, name, &found, tags, setup).await?,
        };
        Ok(EnsuredNetwork {
            config: NetworkConfig {
                vpc,
                subnets,
                security_groups: vec![group.resource.id.clone()],
            },
            group,
        })
    }

    async fn ensure_role(&self, spec: &RoleSpec, tags: &Tags) -> Result<Ensured> {
        const OP: &str = "ensure the role";
        let setup = setup_id(OP, tags)?;
        let name = spec.name.as_str();
        if let Err(err) = serde_json::from_str::<serde_json::Value>(&spec.policy) {
            return Err(Error::invalid(
                OP,
                format!("the policy of role {name} is not JSON: {err}"),
            ));
        }
        if let Some(role) = self.get_role(name).await? {
            return self.existing_role(spec, &role, tags, setup).await;
        }
        let created = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust_policy(&spec.service).to_string())
            .description(&spec.description)
            .set_tags(Some(iam_tags(OP, name, tags)?))
            .send()
            .await;
        let arn = match created {
            Ok(out) => out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
            Err(err) if err.code() == Some("EntityAlreadyExists") => {
                return match self.get_role(name).await? {
                    Some(role) => self.existing_role(spec, &role, tags, setup).await,
                    None => Err(map("create the role", format!("role {name}"), err)),
                };
            }
            Err(err) => return Err(map("create the role", format!("role {name}"), err)),
        };
        self.put_role_policy(spec).await?;
        Ok(ensured(ResourceKind::Role, name, &arn, Change::Created))
    }

    async fn ensure_build_project(&self, spec: &BuildProjectSpec, tags: &Tags) -> Result<Ensured> {
        const OP: &str = "ensure the build project";
        let setup = setup_id(OP, tags)?;
        let name = spec.name.as_str();
        let settings = ProjectSettings::of(spec)?;
        let Some(project) = self.build_projects(vec![name.to_owned()]).await?.pop() else {
            let arn = self.create_build_project(spec, &settings, tags).await?;
            return Ok(ensured(
                ResourceKind::BuildProject,
                name,
                &arn,
                Change::Created,
            ));
        };
        let existing = tags_of_project(&project);
        let whose = owner(&existing, setup);
        if whose != Owner::Ours {
            return Err(foreign(OP, ResourceKind::BuildProject, name, &whose));
        }
        let missing = missing_tags(&existing, tags);
        let wrote = !settings.matches(&project) || !missing.is_empty();
        if wrote {
            let mut all = existing;
            all.extend(tags.clone());
            self.codebuild
                .update_project()
                .name(name)
                .description(&settings.description)
                .source(settings.source)
                .artifacts(settings.artifacts)
                .environment(settings.environment)
                .logs_config(settings.logs)
                .service_role(&settings.role)
                .timeout_in_minutes(settings.timeout)
                .set_tags(Some(codebuild_tags(&all)))
                .send()
                .await
                .map_err(|err| {
                    map(
                        "update the build project",
                        format!("build project {name}"),
                        err,
                    )
                })?;
        }
        let arn = project.arn().unwrap_or_default();
        Ok(ensured(
            ResourceKind::BuildProject,
            name,
            arn,
            change(wrote),
        ))
    }

    async fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<Resource>> {
        let mut found = self.find_buckets(key, value).await?;
        found.extend(self.find_repositories(key, value).await?);
        found.extend(self.find_clusters(key, value).await?);
        found.extend(self.find_log_groups(key, value).await?);
        found.extend(self.find_groups(key, value).await?);
        found.extend(self.find_roles(key, value).await?);
        found.extend(self.find_build_projects(key, value).await?);
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn delete(&self, resource: &Resource) -> Result<()> {
        let id = resource.id.as_str();
        match resource.kind {
            ResourceKind::Bucket => self.delete_bucket(id).await,
            ResourceKind::Repository => {
                let name = id.split_once(":repository/").map_or(id, |(_, n)| n);
                match self
                    .ecr
                    .delete_repository()
                    .repository_name(name)
                    .force(true)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(err) if err.code() == Some("RepositoryNotFoundException") => Ok(()),
                    Err(err) => Err(map(
                        "delete the repository",
                        format!("repository {name}"),
                        err,
                    )),
                }
            }
            ResourceKind::Cluster => self.delete_cluster(id).await,
            ResourceKind::LogGroup => {
                let name = id
                    .split_once(":log-group:")
                    .map_or(id, |(_, n)| n.trim_end_matches(":*"));
                match self
                    .logs
                    .delete_log_group()
                    .log_group_name(name)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(()),
                    Err(err) => Err(map(
                        "delete the log group",
                        format!("log group {name}"),
                        err,
                    )),
                }
            }
            ResourceKind::SecurityGroup => self.delete_group(id).await,
            ResourceKind::Role => self.delete_role(role_name(id)).await,
            ResourceKind::BuildProject => {
                let name = id.rsplit_once(":project/").map_or(id, |(_, n)| n);
                match self.codebuild.delete_project().name(name).send().await {
                    Ok(_) => Ok(()),
                    Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(()),
                    Err(err) => Err(map(
                        "delete the build project",
                        format!("build project {name}"),
                        err,
                    )),
                }
            }
        }
    }
}

/// A network interface that uses a security group.
struct GroupUser {
    id: String,
    description: String,
    of_ecs_task: bool,
}

/// Whether an interface's description is an ECS attachment ARN
/// (`arn:aws:ecs:<region>:<account>:attachment/<id>`), as Fargate tasks' interfaces have.
fn is_ecs_attachment(description: &str) -> bool {
    description.starts_with("arn:aws")
        && description.contains(":ecs:")
        && description.contains(":attachment/")
}

/// `Ok` for a call whose target is already gone (IAM's `NoSuchEntity`), else the mapped
/// error: deleting what no longer exists succeeds.
fn unless_gone<T, E>(
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    op: &'static str,
    resource: impl FnOnce() -> String,
) -> Result<()>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.code() == Some("NoSuchEntity") => Ok(()),
        Err(err) => Err(map(op, resource(), err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags_of<const N: usize>(pairs: [(&str, &str); N]) -> Tags {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn iam_documents_are_decoded_and_parsed() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            iam_document(encoded),
            Some(serde_json::json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(
            iam_document(r#"{"a": "50%"}"#),
            Some(serde_json::json!({"a": "50%"}))
        );
        assert_eq!(iam_document("not json"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }

    #[test]
    fn ownership_follows_the_setup_tag() {
        let ours = tags_of([(SETUP_TAG, "s1"), ("starburst:managed", "true")]);
        assert_eq!(owner(&ours, "s1"), Owner::Ours);
        assert_eq!(owner(&ours, "s2"), Owner::Other(Some("s1".into())));
        assert_eq!(owner(&Tags::new(), "s1"), Owner::Untagged);
        assert_eq!(owner(&tags_of([("team", "x")]), "s1"), Owner::Other(None));
        let err = foreign(
            "ensure",
            ResourceKind::Bucket,
            "b",
            &Owner::Other(Some("s1".into())),
        );
        assert!(err.is_already_exists());
        assert!(
            err.to_string().contains("choose another bucket name"),
            "{err}"
        );
        assert!(setup_id("op", &tags_of([("team", "x")])).is_err());
    }

    #[test]
    fn missing_tags_are_the_absent_and_the_different() {
        let existing = tags_of([("a", "1"), ("b", "2")]);
        let wanted = tags_of([("a", "1"), ("b", "3"), ("c", "4")]);
        assert_eq!(
            missing_tags(&existing, &wanted),
            tags_of([("b", "3"), ("c", "4")])
        );
    }

    #[test]
    fn role_names_come_from_arns() {
        assert_eq!(role_name("arn:aws:iam::123456789012:role/path/r1"), "r1");
        assert_eq!(role_name("r1"), "r1");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_dependents_is_bounded() {
        let mut tries = 0;
        let err = until_unblocked::<(), _, _>(Duration::from_secs(10), || {
            tries += 1;
            async {
                Ok(Step::Blocked(Error::other(
                    "delete",
                    "sg-1",
                    "still in use",
                )))
            }
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("still in use"), "{err}");
        assert!(tries > 1, "retried: {tries}");

        let mut tries = 0;
        let value = until_unblocked(Duration::from_secs(10), || {
            tries += 1;
            let blocked = tries < 3;
            async move {
                Ok(if blocked {
                    Step::Blocked(Error::other("delete", "sg-1", "still in use"))
                } else {
                    Step::Done(7)
                })
            }
        })
        .await
        .unwrap();
        assert_eq!((value, tries), (7, 3));

        let err = until_unblocked::<(), _, _>(Duration::ZERO, || async {
            Err(Error::invalid("delete", "bad"))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }));
    }
}
