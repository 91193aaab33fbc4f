//! Without usable credentials, a call fails at once with `Error::Credentials` saying what to
//! do, never as a transient failure retried in silence. Its own test binary: it clears the
//! process's AWS environment, which no other test may see.

use starburst_aws::{Aws, AwsOptions, S3Options, S3Store};
use starburst_cloud::{Error, ObjectPath, ObjectStore};

#[test]
#[allow(unsafe_code)]
fn no_credentials_anywhere_is_a_credentials_error_that_says_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("missing");
    // SAFETY: the only test of this binary, before any thread (the runtime) starts.
    unsafe {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_ENDPOINT_URL",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_CONFIG_FILE", &missing);
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &missing);
        // Never ask the instance metadata service (nothing but 127.0.0.1 is reached here).
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt.block_on(async {
        let mut options = AwsOptions::default()
            .with_region("us-east-1")
            .with_max_attempts(1);
        // A closed port on loopback: the request must not get that far.
        options.endpoint_url = Some("http://127.0.0.1:9".into());
        let aws = Aws::connect(options).await;
        let store = S3Store::new(&aws, "bucket", "prefix", S3Options::default()).unwrap();
        store
            .get(&ObjectPath::parse("k").unwrap())
            .await
            .unwrap_err()
    });
    assert!(matches!(e, Error::Credentials { .. }), "{e:?}");
    assert!(e.needs_user() && !e.is_retryable());
    assert!(e.to_string().contains("aws sso login"), "{e}");
}
