//! `Ec2Network` against moto's EC2, which gives every region a default VPC with one subnet per
//! availability zone.

#![cfg(feature = "network")]

mod support;

use std::sync::Arc;

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use starburst_aws::Ec2Network;
use starburst_cloud::{Error, Network, NetworkRequest};
use support::Moto;

fn request(name: &str) -> NetworkRequest {
    NetworkRequest {
        security_group_name: name.into(),
        ..Default::default()
    }
}

/// The default VPC's id and its subnets, sorted.
async fn default_vpc(ec2: &aws_sdk_ec2::Client) -> (String, Vec<String>) {
    let vpcs = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .unwrap();
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_owned();
    (vpc.clone(), subnets_of(ec2, &vpc).await)
}

async fn subnets_of(ec2: &aws_sdk_ec2::Client, vpc: &str) -> Vec<String> {
    let out = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .subnets()
        .iter()
        .map(|s| s.subnet_id().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A new VPC with `n` subnets; returns its id and the subnets in creation order.
async fn new_vpc(ec2: &aws_sdk_ec2::Client, cidr: u8, n: u8) -> (String, Vec<String>) {
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("10.{cidr}.0.0/16"))
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_owned();
    let mut subnets = Vec::new();
    for i in 0..n {
        let out = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.{cidr}.{i}.0/24"))
            .send()
            .await
            .unwrap();
        subnets.push(out.subnet().unwrap().subnet_id().unwrap().to_owned());
    }
    (vpc, subnets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_network_passes_the_network_conformance_suite() {
    let moto = Moto::start().await;
    starburst_cloud::conformance::network(Arc::new(Ec2Network::new(&moto.aws().await))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_vpc_gets_an_egress_only_group_tagged_as_managed() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (vpc, subnets) = default_vpc(&ec2).await;
    assert!(
        subnets.len() > 1,
        "moto's default VPC has a subnet per zone"
    );

    let config = network.ensure(&request("starburst-workers")).await.unwrap();
    assert_eq!(config.vpc, vpc);
    assert_eq!(config.subnets, subnets, "every subnet, sorted");
    assert_eq!(config.security_groups.len(), 1);

    let groups = ec2
        .describe_security_groups()
        .group_ids(&config.security_groups[0])
        .send()
        .await
        .unwrap();
    let group = &groups.security_groups()[0];
    assert_eq!(group.group_name(), Some("starburst-workers"));
    assert_eq!(group.vpc_id(), Some(vpc.as_str()));
    assert!(group.ip_permissions().is_empty(), "no inbound rule");
    let egress = group.ip_permissions_egress();
    assert!(
        egress.iter().any(|p| p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))),
        "all outbound traffic: {egress:?}"
    );
    assert!(
        group
            .tags()
            .iter()
            .any(|t| t.key() == Some("starburst:managed") && t.value() == Some("true")),
        "{:?}",
        group.tags()
    );

    // Again: the same group, no second one.
    assert_eq!(
        network.ensure(&request("starburst-workers")).await.unwrap(),
        config
    );
    let named = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("group-name")
                .values("starburst-workers")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(named.security_groups().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_subnets_choose_their_vpc_and_keep_their_order() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (vpc, subnets) = new_vpc(&ec2, 7, 3).await;
    let chosen = vec![subnets[2].clone(), subnets[0].clone()];
    let config = network
        .ensure(&NetworkRequest {
            subnets: chosen.clone(),
            ..request("starburst-workers")
        })
        .await
        .unwrap();
    assert_eq!(config.vpc, vpc);
    assert_eq!(config.subnets, chosen);
    // The group is made in that VPC, apart from the default VPC's group of the same name.
    let default_group = network
        .ensure(&request("starburst-workers"))
        .await
        .unwrap()
        .security_groups;
    assert_ne!(config.security_groups, default_group);
    // With the matching VPC named too: the same answer.
    let again = network
        .ensure(&NetworkRequest {
            subnets: chosen,
            vpc: Some(vpc),
            ..request("starburst-workers")
        })
        .await
        .unwrap();
    assert_eq!(again, config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vpc_id_takes_all_its_subnets_sorted() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (vpc, _) = new_vpc(&ec2, 8, 4).await;
    let config = network
        .ensure(&NetworkRequest {
            vpc: Some(vpc.clone()),
            ..request("starburst-workers")
        })
        .await
        .unwrap();
    assert_eq!(config.vpc, vpc);
    assert_eq!(config.subnets, subnets_of(&ec2, &vpc).await);
    assert_eq!(config.subnets.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subnets_and_vpcs_are_not_found_by_name() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (_, subnets) = default_vpc(&ec2).await;
    let err = network
        .ensure(&NetworkRequest {
            subnets: vec![subnets[0].clone(), "subnet-0000000000000dead".into()],
            ..request("starburst-workers")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { resource, .. }
            if resource.contains("subnet-0000000000000dead") && !resource.contains(&subnets[0])),
        "{err}"
    );
    let err = network
        .ensure(&NetworkRequest {
            vpc: Some("vpc-0000000000000dead".into()),
            ..request("starburst-workers")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { resource, .. } if resource.contains("vpc-0000000000000dead")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_of_two_vpcs_or_of_another_vpc_are_invalid_input() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (default, default_subnets) = default_vpc(&ec2).await;
    let (_, other_subnets) = new_vpc(&ec2, 9, 1).await;
    let mixed = NetworkRequest {
        subnets: vec![default_subnets[0].clone(), other_subnets[0].clone()],
        ..request("starburst-workers")
    };
    let err = network.ensure(&mixed).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { message, .. } if message.contains("different VPCs")),
        "{err}"
    );
    let mismatched = NetworkRequest {
        subnets: other_subnets,
        vpc: Some(default),
        ..request("starburst-workers")
    };
    let err = network.ensure(&mismatched).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_without_a_default_vpc_asks_for_subnets() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (vpc, subnets) = default_vpc(&ec2).await;
    for subnet in &subnets {
        ec2.delete_subnet().subnet_id(subnet).send().await.unwrap();
    }
    ec2.delete_vpc().vpc_id(&vpc).send().await.unwrap();
    let err = network
        .ensure(&request("starburst-workers"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { message, .. }
            if message.contains("no default VPC") && message.contains("subnets = c(...)")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_that_name_with_inbound_rules_is_refused() {
    let moto = Moto::start().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config());
    let network = Ec2Network::new(&moto.aws().await);
    let (vpc, _) = default_vpc(&ec2).await;
    let id = ec2
        .create_security_group()
        .group_name("open")
        .description("ssh")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    ec2.authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let err = network.ensure(&request("open")).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { message, .. } if message.contains("inbound")),
        "{err}"
    );
    // An existing group without inbound rules is used as it is.
    let closed = ec2
        .create_security_group()
        .group_name("closed")
        .description("egress only")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let config = network.ensure(&request("closed")).await.unwrap();
    assert_eq!(config.security_groups, vec![closed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_group_name_is_invalid_input() {
    let moto = Moto::start().await;
    let network = Ec2Network::new(&moto.aws().await);
    let err = network.ensure(&request(" ")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}
