//! The registry port on ECR.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ecr::config::Region;
use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::types::ImageIdentifier;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use starburst_cloud::{Error, ImageRef, Registry, RegistryLogin, Result};

use crate::Aws;
use crate::error::map;

/// An ECR repository, as named by its URI `<account>.dkr.ecr.<region>.amazonaws.com/<name>`
/// (`.amazonaws.com.cn` in the China regions): the `repository` of an [`ImageRef`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrRepository {
    /// The registry: the 12-digit id of the account that owns the repository.
    pub account: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The repository name, e.g. `starburst` or `team/starburst`.
    pub name: String,
}

impl EcrRepository {
    /// The repository `name` in `account`'s registry in `region`.
    pub fn new(
        account: impl Into<String>,
        region: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self> {
        let repo = Self {
            account: account.into(),
            region: region.into(),
            name: name.into(),
        };
        repo.check().map_err(|what| {
            Error::invalid("name an ECR repository", format!("{repo:?}: {what}"))
        })?;
        Ok(repo)
    }

    /// Parses a repository URI such as `123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst`.
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = |what: &str| {
            Error::invalid(
                "parse an ECR repository URI",
                format!(
                    "{uri:?} {what}; expected <account>.dkr.ecr.<region>.amazonaws.com/<repository>"
                ),
            )
        };
        let (host, name) = uri
            .split_once('/')
            .ok_or_else(|| invalid("has no repository name"))?;
        let host = host
            .strip_suffix(".amazonaws.com")
            .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
            .ok_or_else(|| invalid("is not on amazonaws.com"))?;
        let (account, region) = host
            .split_once(".dkr.ecr.")
            .ok_or_else(|| invalid("is not an ECR registry host"))?;
        let repo = Self {
            account: account.to_owned(),
            region: region.to_owned(),
            name: name.to_owned(),
        };
        repo.check().map_err(invalid)?;
        Ok(repo)
    }

    /// The repository of `image`.
    pub fn of(image: &ImageRef) -> Result<Self> {
        Self::parse(&image.repository)
    }

    /// The registry host, `<account>.dkr.ecr.<region>.amazonaws.com`.
    pub fn host(&self) -> String {
        let domain = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("{}.dkr.ecr.{}.{domain}", self.account, self.region)
    }

    /// The repository URI, `<host>/<name>`.
    pub fn uri(&self) -> String {
        format!("{}/{}", self.host(), self.name)
    }

    /// The image of this repository tagged `tag`.
    pub fn image(&self, tag: impl Into<String>) -> ImageRef {
        ImageRef {
            repository: self.uri(),
            tag: tag.into(),
        }
    }

    /// What is wrong with this name, if anything.
    fn check(&self) -> std::result::Result<(), &'static str> {
        if self.account.len() != 12 || !self.account.bytes().all(|b| b.is_ascii_digit()) {
            return Err("has no 12-digit account id");
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err("has no valid region");
        }
        // ECR: lowercase letters, digits and `._-/`, starting with a letter or digit.
        let name_ok = self
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && self.name.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-' | b'/')
            })
            && !self.name.ends_with('/');
        if !name_ok {
            return Err("has no valid repository name (lowercase letters, digits, . _ - /)");
        }
        Ok(())
    }
}

impl fmt::Display for EcrRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Worker images in ECR.
///
/// [`Registry::exists`] asks ECR (`DescribeImages`) for the image's tag in the repository its
/// URI names, in the URI's account and region: a missing tag is `Ok(false)`, a missing
/// repository is [`Error::NotFound`] (set-up creates it). [`Registry::login`] returns the
/// 12-hour push credentials of the account's own registry in the configured region
/// (`GetAuthorizationToken`).
#[derive(Debug, Clone)]
pub struct EcrRegistry {
    client: aws_sdk_ecr::Client,
}

impl EcrRegistry {
    /// The registries reachable with `aws`.
    pub fn new(aws: &Aws) -> Self {
        Self {
            client: aws_sdk_ecr::Client::new(aws.sdk()),
        }
    }
}

#[async_trait]
impl Registry for EcrRegistry {
    async fn exists(&self, image: &ImageRef) -> Result<bool> {
        let repo = EcrRepository::of(image)?;
        let out = self
            .client
            .describe_images()
            .registry_id(&repo.account)
            .repository_name(&repo.name)
            .image_ids(ImageIdentifier::builder().image_tag(&image.tag).build())
            .customize()
            .config_override(
                aws_sdk_ecr::Config::builder().region(Region::new(repo.region.clone())),
            )
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .image_details()
                .iter()
                .any(|d| d.image_tags().contains(&image.tag))),
            Err(err) => match err.as_service_error() {
                Some(DescribeImagesError::ImageNotFoundException(_)) => Ok(false),
                Some(DescribeImagesError::RepositoryNotFoundException(_)) => Err(Error::not_found(
                    "look up image",
                    format!(
                        "ECR repository {repo} (create it with starburst_setup(), or check the \
                         account and region of the image)"
                    ),
                )),
                _ => Err(map("look up image", image.to_string(), err)),
            },
        }
    }

    async fn login(&self) -> Result<RegistryLogin> {
        const OP: &str = "log in to ECR";
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|err| map(OP, "the account's registry".into(), err))?;
        let data = out.authorization_data().first().ok_or_else(|| {
            Error::other(OP, "the account's registry", "ECR answered without a token")
        })?;
        let endpoint = data.proxy_endpoint().unwrap_or_default();
        let token = data.authorization_token().unwrap_or_default();
        login_of(endpoint, token).map_err(|what| Error::other(OP, endpoint, what))
    }
}

/// Push credentials from an ECR proxy endpoint (`https://<host>`) and authorization token
/// (base64 of `<user>:<password>`, the user being `AWS`).
fn login_of(endpoint: &str, token: &str) -> std::result::Result<RegistryLogin, &'static str> {
    let server = endpoint
        .strip_prefix("https://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    if server.is_empty() {
        return Err("ECR answered without a registry endpoint");
    }
    let decoded = STANDARD
        .decode(token.trim())
        .map_err(|_| "ECR's authorization token is not base64")?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| "ECR's authorization token is not text")?;
    let (username, password) = decoded
        .split_once(':')
        .filter(|(user, password)| !user.is_empty() && !password.is_empty())
        .ok_or("ECR's authorization token is not <user>:<password>")?;
    Ok(RegistryLogin {
        server: server.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_uris_round_trip() {
        for uri in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst",
            "123456789012.dkr.ecr.eu-central-1.amazonaws.com/team/starburst-env_1.0",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/starburst",
        ] {
            let repo = EcrRepository::parse(uri).unwrap();
            assert_eq!(repo.uri(), uri);
        }
        let repo =
            EcrRepository::parse("123456789012.dkr.ecr.us-west-2.amazonaws.com/a/b").unwrap();
        assert_eq!(
            (
                repo.account.as_str(),
                repo.region.as_str(),
                repo.name.as_str()
            ),
            ("123456789012", "us-west-2", "a/b")
        );
        let image = repo.image("abc123");
        assert_eq!(
            image.to_string(),
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/a/b:abc123"
        );
        assert_eq!(EcrRepository::of(&image).unwrap(), repo);
        assert_eq!(
            EcrRepository::new("123456789012", "us-east-1", "starburst")
                .unwrap()
                .uri(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst"
        );
    }

    #[test]
    fn other_uris_are_invalid_input() {
        for uri in [
            "docker.io/rocker/r-ver",
            "rocker/r-ver",
            "starburst",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/Upper",
            "1234.dkr.ecr.us-east-1.amazonaws.com/starburst",
            "123456789012.dkr.ecr..amazonaws.com/starburst",
            "123456789012.s3.us-east-1.amazonaws.com/starburst",
        ] {
            let err = EcrRepository::parse(uri).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput { message, .. } if message.contains(uri)),
                "{uri}: {err}"
            );
        }
        assert!(EcrRepository::new("123456789012", "us-east-1", "-x").is_err());
    }

    #[test]
    fn the_token_decodes_into_a_login() {
        let token = STANDARD.encode("AWS:secret:with:colons");
        let login = login_of(
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
            &token,
        )
        .unwrap();
        assert_eq!(login.server, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(login.username, "AWS");
        assert_eq!(login.password, "secret:with:colons");
        assert!(!format!("{login:?}").contains("secret"));
        for bad in [
            "",
            "!!!",
            &STANDARD.encode("no-colon"),
            &STANDARD.encode("AWS:"),
        ] {
            assert!(login_of("https://h", bad).is_err(), "{bad:?}");
        }
        assert!(login_of("", &token).is_err());
    }
}
