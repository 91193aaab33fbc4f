//! The network port on EC2: which VPC and subnets workers use, and their security group.

use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, ResourceType, SecurityGroup, Tag, TagSpecification};
use starburst_cloud::{Error, Network, NetworkConfig, NetworkRequest, Result};

use crate::Aws;
use crate::error::map;

/// The tag that marks what set-up created.
const MANAGED_TAG: (&str, &str) = ("starburst:managed", "true");

/// What a created group says it is for.
const GROUP_DESCRIPTION: &str = "starburst workers: no inbound rules, all outbound traffic";

pub(crate) const OP: &str = "ensure the worker network";

/// Worker networking in EC2.
///
/// [`Network::ensure`] picks the VPC and subnets: the caller's subnets when given (all in one
/// VPC, which must match the caller's VPC if one is also given), else every subnet of the
/// caller's VPC, else every subnet of the region's default VPC, sorted by id. In that VPC it
/// finds the security group of the requested name, or creates it tagged `starburst:managed =
/// true`. A new group has no inbound rule and EC2's allow-all outbound rule: workers only dial
/// out (to S3, ECR and CloudWatch Logs). A group found with inbound rules is refused, since
/// nothing may listen. Calling `ensure` again returns the same network.
#[derive(Debug, Clone)]
pub struct Ec2Network {
    client: aws_sdk_ec2::Client,
    region: Option<String>,
}

/// Availability Zones (by id, the same in every account) where Fargate runs, for the regions
/// where it does not run in all of them. Source: "Supported Regions for Amazon ECS on AWS
/// Fargate", Linux containers
/// (<https://docs.aws.amazon.com/AmazonECS/latest/developerguide/AWS_Fargate-Regions.html>),
/// read 2026-12. (Older versions of that page also limited ca-central-1 to cac1-az1 and
/// cac1-az2; the current one does not.)
const FARGATE_ZONES: &[(&str, &[&str])] = &[
    ("us-west-1", &["usw1-az1", "usw1-az3"]),
    ("ap-northeast-1", &["apne1-az1", "apne1-az2", "apne1-az4"]),
    ("cn-north-1", &["cnn1-az1", "cnn1-az2"]),
];

/// Whether Fargate runs tasks in the zone `zone_id` of `region` (unknown: yes).
pub(crate) fn fargate_runs_in(region: &str, zone_id: Option<&str>) -> bool {
    match (FARGATE_ZONES.iter().find(|(r, _)| *r == region), zone_id) {
        (Some((_, zones)), Some(zone)) => zones.contains(&zone),
        _ => true,
    }
}

impl Ec2Network {
    /// The network of the region of `aws`.
    pub fn new(aws: &Aws) -> Self {
        Self {
            client: aws_sdk_ec2::Client::new(aws.sdk()),
            region: aws.region().map(str::to_owned),
        }
    }

    /// The VPC of the caller's `subnets`, with the subnets in the caller's order.
    async fn explicit_subnets(&self, subnets: &[String]) -> Result<(String, Vec<String>)> {
        let mut ids: Vec<String> = Vec::with_capacity(subnets.len());
        for id in subnets {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        let named = format!("subnets {}", ids.join(", "));
        // A filter, not SubnetIds: unknown ids are left out instead of failing the call, so the
        // error can name exactly the missing ones.
        let mut pages = self
            .client
            .describe_subnets()
            .filters(
                Filter::builder()
                    .name("subnet-id")
                    .set_values(Some(ids.clone()))
                    .build(),
            )
            .into_paginator()
            .send();
        let mut found: Vec<(String, String)> = Vec::new();
        let mut no_fargate: Vec<String> = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("describe subnets", named.clone(), err))?;
            for s in page.subnets() {
                let (Some(id), Some(vpc)) = (s.subnet_id(), s.vpc_id()) else {
                    continue;
                };
                if !self.fargate_runs_in(s.availability_zone_id()) {
                    no_fargate.push(format!(
                        "{id} ({})",
                        s.availability_zone_id().unwrap_or_default()
                    ));
                }
                found.push((id.to_owned(), vpc.to_owned()));
            }
        }
        if !no_fargate.is_empty() {
            return Err(Error::invalid(
                OP,
                format!(
                    "Fargate does not run in the Availability Zone of subnets {}; pass subnets \
                     of other zones (see the AWS page \"Supported Regions for Amazon ECS on AWS \
                     Fargate\")",
                    no_fargate.join(", ")
                ),
            ));
        }
        let mut vpcs: Vec<&str> = found.iter().map(|(_, vpc)| vpc.as_str()).collect();
        vpcs.sort_unstable();
        vpcs.dedup();
        let missing: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| !found.iter().any(|(s, _)| s == id))
            .collect();
        if !missing.is_empty() {
            return Err(Error::not_found(
                "describe subnets",
                format!("subnets {}", missing.join(", ")),
            ));
        }
        match vpcs.as_slice() {
            [vpc] => Ok(((*vpc).to_owned(), ids)),
            _ => Err(Error::invalid(
                OP,
                format!(
                    "the {named} lie in different VPCs ({}); workers need subnets of one VPC",
                    vpcs.join(", ")
                ),
            )),
        }
    }

    /// The region's default VPC.
    async fn default_vpc(&self) -> Result<String> {
        let out = self
            .client
            .describe_vpcs()
            .filters(filter("is-default", "true"))
            .send()
            .await
            .map_err(|err| map("describe VPCs", "the default VPC".into(), err))?;
        out.vpcs()
            .iter()
            .find_map(|v| v.vpc_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::invalid(
                    OP,
                    "this region has no default VPC; pass subnets = c(...) (and vpc = ...) of a \
                     VPC whose subnets can reach S3 and ECR",
                )
            })
    }

    /// Checks that `vpc` exists.
    async fn check_vpc(&self, vpc: &str) -> Result<()> {
        // A filter, not VpcIds: an unknown or malformed id is an empty answer, not an error.
        let out = self
            .client
            .describe_vpcs()
            .filters(filter("vpc-id", vpc))
            .send()
            .await
            .map_err(|err| map("describe VPCs", format!("VPC {vpc}"), err))?;
        if out.vpcs().is_empty() {
            return Err(Error::not_found("describe VPCs", format!("VPC {vpc}")));
        }
        Ok(())
    }

    fn fargate_runs_in(&self, zone_id: Option<&str>) -> bool {
        self.region
            .as_deref()
            .is_none_or(|region| fargate_runs_in(region, zone_id))
    }

    /// Every subnet of `vpc` in a zone where Fargate runs, sorted by id.
    async fn subnets_of(&self, vpc: &str) -> Result<Vec<String>> {
        let mut pages = self
            .client
            .describe_subnets()
            .filters(filter("vpc-id", vpc))
            .into_paginator()
            .send();
        let mut ids = Vec::new();
        let mut skipped = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("describe subnets", format!("VPC {vpc}"), err))?;
            for s in page.subnets() {
                let Some(id) = s.subnet_id() else { continue };
                if self.fargate_runs_in(s.availability_zone_id()) {
                    ids.push(id.to_owned());
                } else {
                    skipped.push(format!(
                        "{id} ({})",
                        s.availability_zone_id().unwrap_or_default()
                    ));
                }
            }
        }
        if ids.is_empty() {
            let why = if skipped.is_empty() {
                "has no subnets".to_owned()
            } else {
                format!(
                    "has subnets only in Availability Zones where Fargate does not run ({})",
                    skipped.join(", ")
                )
            };
            return Err(Error::invalid(
                OP,
                format!(
                    "VPC {vpc} {why}; pass subnets = c(...) of a VPC whose subnets can reach S3 \
                     and ECR"
                ),
            ));
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The group named `name` in `vpc`, if there is one.
    pub(crate) async fn find_group(&self, vpc: &str, name: &str) -> Result<Option<SecurityGroup>> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter("vpc-id", vpc))
            .filters(filter("group-name", name))
            .send()
            .await
            .map_err(|err| map("describe security groups", group(vpc, name), err))?;
        Ok(out.security_groups().first().cloned())
    }

    /// The group named `name` in `vpc`: found, or created (with EC2's allow-all outbound rule,
    /// no inbound rule, and `tags`) when missing.
    pub(crate) async fn find_or_create_group(
        &self,
        vpc: &str,
        name: &str,
        tags: &[(&str, &str)],
    ) -> Result<Group> {
        if let Some(found) = self.find_group(vpc, name).await? {
            return Ok(Group::Found(found));
        }
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::SecurityGroup)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                    .collect(),
            ))
            .build();
        let created = self
            .client
            .create_security_group()
            .group_name(name)
            .description(GROUP_DESCRIPTION)
            .vpc_id(vpc)
            .tag_specifications(tags)
            .send()
            .await;
        match created {
            Ok(out) => out
                .group_id()
                .map(|id| Group::Created(id.to_owned()))
                .ok_or_else(|| {
                    Error::other(
                        "create security group",
                        group(vpc, name),
                        "EC2 answered without the group id",
                    )
                }),
            // Another set-up created it meanwhile.
            Err(err) if err.code() == Some("InvalidGroup.Duplicate") => {
                match self.find_group(vpc, name).await? {
                    Some(found) => Ok(Group::Found(found)),
                    None => Err(map("create security group", group(vpc, name), err)),
                }
            }
            Err(err) => Err(map("create security group", group(vpc, name), err)),
        }
    }

    /// The id of the egress-only group named `name` in `vpc`, created when missing.
    async fn ensure_group(&self, vpc: &str, name: &str) -> Result<String> {
        match self.find_or_create_group(vpc, name, &[MANAGED_TAG]).await? {
            Group::Created(id) => Ok(id),
            Group::Found(found) => egress_only(&found, &group(vpc, name)),
        }
    }

    /// The VPC and subnets `request` asks for (see [`Ec2Network`]).
    pub(crate) async fn locate(&self, request: &NetworkRequest) -> Result<(String, Vec<String>)> {
        if !request.subnets.is_empty() {
            let (vpc, subnets) = self.explicit_subnets(&request.subnets).await?;
            if let Some(wanted) = request.vpc.as_deref().filter(|w| *w != vpc) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "the subnets {} lie in VPC {vpc}, not in the VPC {wanted} asked for",
                        subnets.join(", ")
                    ),
                ));
            }
            Ok((vpc, subnets))
        } else {
            let vpc = match &request.vpc {
                Some(vpc) => {
                    self.check_vpc(vpc).await?;
                    vpc.clone()
                }
                None => self.default_vpc().await?,
            };
            let subnets = self.subnets_of(&vpc).await?;
            Ok((vpc, subnets))
        }
    }
}

/// A security group found or made by [`Ec2Network::find_or_create_group`].
#[derive(Debug)]
pub(crate) enum Group {
    /// Created now; its id.
    Created(String),
    /// It was there already.
    Found(SecurityGroup),
}

#[async_trait]
impl Network for Ec2Network {
    async fn ensure(&self, request: &NetworkRequest) -> Result<NetworkConfig> {
        let name = request.security_group_name.trim();
        if name.is_empty() {
            return Err(Error::invalid(OP, "the security group name is empty"));
        }
        let (vpc, subnets) = self.locate(request).await?;
        let group_id = self.ensure_group(&vpc, name).await?;
        Ok(NetworkConfig {
            vpc,
            subnets,
            security_groups: vec![group_id],
        })
    }
}

/// An EC2 filter on one value.
pub(crate) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// How a group is named in errors.
pub(crate) fn group(vpc: &str, name: &str) -> String {
    format!("security group {name} in VPC {vpc}")
}

/// The id of `found`, if it lets nothing in.
pub(crate) fn egress_only(found: &SecurityGroup, named: &str) -> Result<String> {
    if !found.ip_permissions().is_empty() {
        return Err(Error::invalid(
            OP,
            format!(
                "{named} has inbound rules, but workers accept no connections; remove them or \
                 choose another security group name"
            ),
        ));
    }
    found.group_id().map(str::to_owned).ok_or_else(|| {
        Error::other(
            "describe security groups",
            named,
            "EC2 described the group without its id",
        )
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::IpPermission;

    use super::*;

    #[test]
    fn fargate_zones_are_limited_only_where_aws_says_so() {
        assert!(!fargate_runs_in("us-west-1", Some("usw1-az2")));
        assert!(fargate_runs_in("us-west-1", Some("usw1-az1")));
        assert!(!fargate_runs_in("ap-northeast-1", Some("apne1-az3")));
        assert!(fargate_runs_in("ap-northeast-1", Some("apne1-az4")));
        assert!(fargate_runs_in("us-east-1", Some("use1-az3")));
        assert!(
            fargate_runs_in("us-west-1", None),
            "unknown zone: not excluded"
        );
    }

    #[test]
    fn a_group_with_inbound_rules_is_refused() {
        let open = SecurityGroup::builder()
            .group_id("sg-1")
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .build(),
            )
            .build();
        let err = egress_only(&open, "security group g in VPC v").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { message, .. } if message.contains("inbound")),
            "{err}"
        );
        let closed = SecurityGroup::builder()
            .group_id("sg-2")
            .ip_permissions_egress(IpPermission::builder().ip_protocol("-1").build())
            .build();
        assert_eq!(egress_only(&closed, "g").unwrap(), "sg-2");
    }
}
