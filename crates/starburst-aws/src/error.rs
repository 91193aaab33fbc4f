//! Maps AWS SDK errors onto the port error. Private: no SDK type leaves this crate.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use starburst_cloud::Error;

/// What an SDK call failed with, reduced to what the mapping needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The HTTP status, when a response arrived.
    pub(crate) status: Option<u16>,
    /// The service's error code (`NoSuchKey`, `SlowDown`, ...), when it sent one.
    pub(crate) code: Option<String>,
}

impl Failure {
    pub(crate) fn of<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata,
    {
        Self {
            status: err.raw_response().map(|r| r.status().as_u16()),
            code: err.code().map(str::to_owned),
        }
    }

    /// True when a conditional write (`If-None-Match: *`) found the object there: S3 answers
    /// 412 PreconditionFailed. A 409 ConditionalRequestConflict is not that: a concurrent
    /// write to the key was in progress, and S3 says to retry (see [`classify`]).
    pub(crate) fn is_precondition_failed(&self) -> bool {
        self.status == Some(412) || self.code.as_deref() == Some("PreconditionFailed")
    }

    /// True when the key is missing (but not the bucket).
    pub(crate) fn is_missing_key(&self) -> bool {
        match self.code.as_deref() {
            Some("NoSuchBucket") => false,
            Some("NoSuchKey") => true,
            _ => self.status == Some(404),
        }
    }

    /// True when the object or the range exists but the range is past its end.
    pub(crate) fn is_invalid_range(&self) -> bool {
        self.status == Some(416) || self.code.as_deref() == Some("InvalidRange")
    }
}

/// Maps an SDK error of operation `op` on `resource` (`bucket/key`) onto the port error.
pub(crate) fn map<E>(op: &'static str, resource: String, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = Failure::of(&err);
    let message = err.message().unwrap_or_default().to_owned();
    // The credential chain found nothing usable (no profile, an expired SSO session): the SDK
    // reports it as a failure to send, but no retry can help.
    if let Some(c) = credentials_error(&err) {
        return Error::Credentials {
            op,
            message: credentials_advice(&c.to_string()),
        };
    }
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return Error::Transient {
                op,
                resource,
                source: err.into(),
            };
        }
        SdkError::ConstructionFailure(_) => return Error::other(op, resource, err),
        _ => {}
    }
    classify(op, resource, &failure, message, err.into())
}

/// The credential chain's error behind `err`, if that is what failed.
fn credentials_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a aws_credential_types::provider::error::CredentialsError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
        {
            return Some(c);
        }
        cur = e.source();
    }
    None
}

/// The credential chain's words and what to do about them.
pub(crate) fn credentials_advice(said: &str) -> String {
    format!(
        "{said}. Sign in again (`aws sso login --profile <name>`), or set AWS_PROFILE to a profile that has credentials (`aws configure list-profiles`), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )
}

fn classify(
    op: &'static str,
    resource: String,
    f: &Failure,
    message: String,
    source: starburst_cloud::Source,
) -> Error {
    match (f.status, f.code.as_deref()) {
        (_, Some("NoSuchBucket")) => {
            // `bucket/key` from the store, `bucket <name>` from set-up.
            let name = resource.strip_prefix("bucket ").unwrap_or(&resource);
            let bucket = name.split('/').next().unwrap_or_default();
            Error::not_found(op, format!("bucket {bucket}"))
        }
        (_, Some(code)) if is_throttling(code) => Error::Throttled {
            op,
            resource,
            retry_after: None,
        },
        (_, Some(code)) if is_quota(code) => Error::QuotaExceeded {
            op,
            resource,
            message,
        },
        (Some(404), _) | (_, Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) => {
            Error::not_found(op, resource)
        }
        (_, Some(code)) if is_not_found(code) => Error::not_found(op, resource),
        (_, Some(code)) if is_already_exists(code) => Error::already_exists(op, resource),
        (_, Some(code)) if is_invalid(code) => Error::invalid(
            op,
            format!(
                "{resource}: {}",
                if message.is_empty() { code } else { &message }
            ),
        ),
        // IAM: the entity still has dependents (policies, instance profiles) or is being
        // changed by another request.
        (_, Some("DeleteConflict")) => Error::other(
            op,
            resource,
            format!("{message} (it still has dependents; remove them, then retry)"),
        ),
        // IAM's concurrent change, a service failure, and S3's concurrent conditional write to
        // the same key (retry: a retry that finds the object there gets 412).
        (_, Some("ConcurrentModification" | "ServiceFailure" | "ConditionalRequestConflict")) => {
            Error::Transient {
                op,
                resource,
                source,
            }
        }
        (_, Some(code)) if is_credentials(code) => Error::Credentials {
            op,
            message: credentials_advice(&format!(
                "{code}{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            )),
        },
        (Some(412), _) | (_, Some("PreconditionFailed")) => {
            Error::PreconditionFailed { op, resource }
        }
        (Some(429 | 503), _) => Error::Throttled {
            op,
            resource,
            retry_after: None,
        },
        _ if is_denied(f) => Error::AccessDenied {
            op,
            resource,
            message,
        },
        (Some(s), _) if s >= 500 => Error::Transient {
            op,
            resource,
            source,
        },
        _ => Error::Other {
            op,
            resource,
            source,
        },
    }
}

/// Error codes with which AWS services say "slow down".
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "ProvisionedThroughputExceededException"
    )
}

/// Error codes of quotas and service limits.
fn is_quota(code: &str) -> bool {
    matches!(
        code,
        "LimitExceededException"
            | "ServiceQuotaExceededException"
            | "QuotaExceededException"
            | "TooManyBuckets"
            | "VcpuLimitExceeded"
            // IAM
            | "LimitExceeded"
    )
}

/// Error codes of missing resources, other than S3's (handled with the status).
fn is_not_found(code: &str) -> bool {
    code.ends_with("NotFoundException")
        || code.ends_with(".NotFound")
        || matches!(
            code,
            "NoSuchResourceException" | "NoSuchEntity" | "NoSuchEntityException"
        )
}

/// Error codes of a create that found the resource there (IAM's, and the other services' that
/// set-up meets).
fn is_already_exists(code: &str) -> bool {
    matches!(
        code,
        "EntityAlreadyExists"
            | "BucketAlreadyExists"
            | "BucketAlreadyOwnedByYou"
            | "RepositoryAlreadyExistsException"
            | "ResourceAlreadyExistsException"
            | "InvalidGroup.Duplicate"
    )
}

/// Error codes of requests the service refuses as malformed (IAM's and STS's).
fn is_invalid(code: &str) -> bool {
    matches!(
        code,
        "MalformedPolicyDocument"
            | "MalformedPolicyDocumentException"
            | "InvalidInput"
            | "ValidationError"
            | "UnmodifiableEntity"
            | "PackedPolicyTooLarge"
            | "PackedPolicyTooLargeException"
    )
}

/// A 401/403, or an error code of missing permissions or bad credentials.
fn is_denied(f: &Failure) -> bool {
    matches!(f.status, Some(401 | 403))
        || f.code.as_deref().is_some_and(|code| {
            matches!(
                code,
                "AccessDenied"
                    | "AccessDeniedException"
                    | "UnauthorizedOperation"
                    // Service Quotas when the caller may not read the service's own quotas
                    | "DependencyAccessDeniedException"
                    // STS in a region the account has not enabled
                    | "RegionDisabledException"
            )
        })
}

/// Error codes of credentials AWS does not accept (expired, unknown, mistyped).
fn is_credentials(code: &str) -> bool {
    matches!(
        code,
        "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "TokenRefreshRequired"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: Option<u16>, code: Option<&str>) -> Error {
        let f = Failure {
            status,
            code: code.map(str::to_owned),
        };
        classify("get", "b/k".into(), &f, "msg".into(), "boom".into())
    }

    #[test]
    fn statuses_and_codes_map_onto_port_errors() {
        assert!(class(Some(404), None).is_not_found());
        assert!(class(Some(404), Some("NoSuchKey")).is_not_found());
        assert!(
            matches!(class(Some(404), Some("NoSuchBucket")), Error::NotFound { resource, .. } if resource == "bucket b")
        );
        assert!(
            matches!(classify("op", "bucket b".into(), &Failure { status: Some(404), code: Some("NoSuchBucket".into()) }, String::new(), "x".into()), Error::NotFound { resource, .. } if resource == "bucket b")
        );
        assert!(matches!(
            class(Some(412), None),
            Error::PreconditionFailed { .. }
        ));
        assert!(matches!(
            class(Some(503), Some("SlowDown")),
            Error::Throttled { .. }
        ));
        assert!(matches!(class(Some(503), None), Error::Throttled { .. }));
        assert!(matches!(
            class(Some(403), Some("AccessDenied")),
            Error::AccessDenied { .. }
        ));
        assert!(matches!(class(Some(500), None), Error::Transient { .. }));
        assert!(matches!(class(Some(400), Some("Bad")), Error::Other { .. }));
        // Other services' codes, which come with a 400.
        for code in ["ThrottlingException", "TooManyRequestsException"] {
            assert!(
                matches!(class(Some(400), Some(code)), Error::Throttled { .. }),
                "{code}"
            );
        }
        for code in [
            "ClusterNotFoundException",
            "RepositoryNotFoundException",
            "ResourceNotFoundException",
            "NoSuchResourceException",
            "InvalidSubnetID.NotFound",
        ] {
            assert!(class(Some(400), Some(code)).is_not_found(), "{code}");
        }
        for code in [
            "AccessDeniedException",
            "UnauthorizedOperation",
            "DependencyAccessDeniedException",
        ] {
            assert!(
                matches!(class(Some(400), Some(code)), Error::AccessDenied { .. }),
                "{code}"
            );
        }
        // Credentials AWS does not accept: nothing to wait for, the user signs in again.
        for (status, code) in [
            (400, "ExpiredTokenException"),
            (400, "ExpiredToken"),
            (403, "InvalidAccessKeyId"),
            (403, "SignatureDoesNotMatch"),
            (403, "InvalidClientTokenId"),
            (400, "UnrecognizedClientException"),
        ] {
            let e = class(Some(status), Some(code));
            assert!(
                matches!(&e, Error::Credentials { message, .. } if message.contains("aws sso login")),
                "{code}: {e:?}"
            );
            assert!(e.needs_user() && !e.is_retryable());
        }
        for code in ["LimitExceededException", "ServiceQuotaExceededException"] {
            assert!(
                matches!(class(Some(400), Some(code)), Error::QuotaExceeded { .. }),
                "{code}"
            );
        }
    }

    #[test]
    fn iam_and_sts_codes_map_onto_port_errors() {
        assert!(class(Some(404), Some("NoSuchEntity")).is_not_found());
        for code in [
            "EntityAlreadyExists",
            "BucketAlreadyExists",
            "RepositoryAlreadyExistsException",
            "InvalidGroup.Duplicate",
        ] {
            assert!(class(Some(409), Some(code)).is_already_exists(), "{code}");
        }
        for code in ["MalformedPolicyDocument", "InvalidInput", "ValidationError"] {
            assert!(
                matches!(class(Some(400), Some(code)), Error::InvalidInput { message, .. } if message.contains("msg")),
                "{code}"
            );
        }
        assert!(matches!(
            class(Some(409), Some("LimitExceeded")),
            Error::QuotaExceeded { .. }
        ));
        assert!(matches!(
            class(Some(409), Some("DeleteConflict")),
            Error::Other { .. }
        ));
        assert!(class(Some(409), Some("ConcurrentModification")).is_retryable());
        assert!(matches!(
            class(Some(403), Some("RegionDisabledException")),
            Error::AccessDenied { .. }
        ));
    }

    #[test]
    fn only_412_means_the_object_exists_and_409_is_retried() {
        for (s, c) in [(Some(412), None), (None, Some("PreconditionFailed"))] {
            let f = Failure {
                status: s,
                code: c.map(str::to_owned),
            };
            assert!(f.is_precondition_failed(), "{f:?}");
        }
        for (s, c) in [
            (Some(409), Some("ConditionalRequestConflict")),
            (Some(500), None),
        ] {
            let f = Failure {
                status: s,
                code: c.map(str::to_owned),
            };
            assert!(!f.is_precondition_failed(), "{f:?}");
        }
        assert!(class(Some(409), Some("ConditionalRequestConflict")).is_retryable());
    }
}
