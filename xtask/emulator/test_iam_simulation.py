"""Tests of iam_simulation.py: iam:SimulatePrincipalPolicy in a real emulator process (strict
mode, as the emulator runs by default), with boto3 as the client. boto3 validates each request
against botocore's model and parses each reply with it, so a passing test also proves that
the reply has the shape SDKs read.

Run with the moto venv's Python:
`python -m unittest discover -s xtask/emulator -p 'test_iam_simulation.py' -v`.
"""

from __future__ import annotations

import json
import re
import tempfile
import unittest
from typing import Any

import boto3
from botocore.exceptions import ClientError

from iam_simulation import Source, evaluate
from test_emulator import REGION, Emulator

ACCOUNT = "123456789012"
BUCKET = "sim-data"


def policy(*statements: dict[str, Any]) -> str:
    """A policy document, indented as people write them (MatchedStatements has positions)."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=2)


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


# The data policy a starburst session's user gets: its bucket, and ECS to run workers.
DATA_POLICY = policy(
    allow("s3:*", [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]),
    allow("ecs:RunTask"),
)


class SimulatePrincipalPolicyTest(unittest.TestCase):
    emu: Emulator

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory(prefix="starburst-iam-simulation-test-")
        cls.emu = Emulator(cls.tmp.name)
        cls.iam = cls.emu.client("iam")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.emu.stop()
        cls.tmp.cleanup()

    def user(self, name: str, *inline: str) -> str:
        """A new user with the given inline policies; returns its ARN."""
        arn = self.iam.create_user(UserName=name)["User"]["Arn"]
        for i, document in enumerate(inline):
            self.iam.put_user_policy(UserName=name, PolicyName=f"{name}-inline-{i}", PolicyDocument=document)
        return arn

    def simulate(self, arn: str, actions: list[str], resources: list[str] | None = None, **extra: Any) -> list[dict[str, Any]]:
        args: dict[str, Any] = {"PolicySourceArn": arn, "ActionNames": actions, **extra}
        if resources is not None:
            args["ResourceArns"] = resources
        reply = self.iam.simulate_principal_policy(**args)
        self.assertFalse(reply["IsTruncated"])
        return reply["EvaluationResults"]

    def decisions(self, arn: str, actions: list[str], resources: list[str] | None = None, **extra: Any) -> dict[tuple[str, str], str]:
        """(action, resource) -> EvalDecision."""
        return {(r["EvalActionName"], r["EvalResourceName"]): r["EvalDecision"] for r in self.simulate(arn, actions, resources, **extra)}

    def rejected(self, code: str, status: int, call: Any) -> str:
        with self.assertRaises(ClientError) as caught:
            call()
        response = caught.exception.response
        self.assertEqual(response["Error"]["Code"], code, response["Error"])
        self.assertEqual(response["ResponseMetadata"]["HTTPStatusCode"], status)
        return response["Error"]["Message"]

    # -- decisions --------------------------------------------------------------------

    def test_inline_user_policy_allows_its_bucket_and_run_task_only(self) -> None:
        arn = self.user("sim-inline", DATA_POLICY)
        object_arn, other = f"arn:aws:s3:::{BUCKET}/jobs/1.qs", "arn:aws:s3:::someone-else/x"
        self.assertEqual(
            self.decisions(arn, ["s3:PutObject", "s3:GetObject", "ecs:RunTask", "ecs:StopTask"], [object_arn, other]),
            {
                ("s3:PutObject", object_arn): "allowed",
                ("s3:PutObject", other): "implicitDeny",
                ("s3:GetObject", object_arn): "allowed",
                ("s3:GetObject", other): "implicitDeny",
                ("ecs:RunTask", object_arn): "allowed",  # its statement says Resource "*"
                ("ecs:RunTask", other): "allowed",
                ("ecs:StopTask", object_arn): "implicitDeny",
                ("ecs:StopTask", other): "implicitDeny",
            },
        )
        # Without ResourceArns the resource is "*", which only a "*" statement covers, as in
        # AWS's simulator: the bucket-scoped statement does not allow s3:CreateBucket on "*".
        results = self.simulate(arn, ["s3:CreateBucket", "ecs:RunTask"])
        self.assertEqual([(r["EvalActionName"], r["EvalResourceName"], r["EvalDecision"]) for r in results], [
            ("s3:CreateBucket", "*", "implicitDeny"),
            ("ecs:RunTask", "*", "allowed"),
        ])
        self.assertEqual(results[0]["MatchedStatements"], [])
        self.assertEqual(results[0]["MissingContextValues"], [])
        # The deciding statement: the policy's name and type, and where it is in the document.
        self.assertEqual(results[1]["MatchedStatements"], [{
            "SourcePolicyId": "sim-inline-inline-0",
            "SourcePolicyType": "user",
            "StartPosition": {"Line": 12, "Column": 5},  # its "{" (DATA_POLICY's lines 12-16)
            "EndPosition": {"Line": 16, "Column": 6},  # just after its "}"
        }])

    def test_an_explicit_deny_wins_over_any_allow(self) -> None:
        arn = self.user("sim-deny", policy(allow("s3:*"), deny("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/*")))
        self.iam.create_group(GroupName="sim-deny-group")
        self.iam.add_user_to_group(GroupName="sim-deny-group", UserName="sim-deny")
        self.iam.put_group_policy(GroupName="sim-deny-group", PolicyName="no-ecs", PolicyDocument=policy(deny("ecs:*")))
        self.iam.put_user_policy(UserName="sim-deny", PolicyName="ecs", PolicyDocument=policy(allow("ecs:RunTask")))
        key = f"arn:aws:s3:::{BUCKET}/k"
        results = self.simulate(arn, ["s3:DeleteObject", "s3:PutObject", "ecs:RunTask"], [key])
        self.assertEqual([r["EvalDecision"] for r in results], ["explicitDeny", "allowed", "explicitDeny"])
        # Only the Deny statement is reported for a denial.
        self.assertEqual([(m["SourcePolicyId"], m["SourcePolicyType"]) for m in results[0]["MatchedStatements"]], [("sim-deny-inline-0", "user")])
        self.assertEqual([(m["SourcePolicyId"], m["SourcePolicyType"]) for m in results[2]["MatchedStatements"]], [("no-ecs", "group")])

    def test_attached_managed_policies_count(self) -> None:
        arn = self.user("sim-managed")
        managed = self.iam.create_policy(PolicyName="sim-logs", PolicyDocument=policy(allow(["logs:CreateLogStream", "logs:PutLogEvents"], "arn:aws:logs:*:*:log-group:/starburst/*")))["Policy"]
        stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/starburst/workers:log-stream:s"
        self.assertEqual(self.decisions(arn, ["logs:PutLogEvents"], [stream]), {("logs:PutLogEvents", stream): "implicitDeny"})
        self.iam.attach_user_policy(UserName="sim-managed", PolicyArn=managed["Arn"])
        results = self.simulate(arn, ["logs:PutLogEvents", "logs:DeleteLogGroup"], [stream])
        self.assertEqual([r["EvalDecision"] for r in results], ["allowed", "implicitDeny"])
        self.assertEqual([(m["SourcePolicyId"], m["SourcePolicyType"]) for m in results[0]["MatchedStatements"]], [("sim-logs", "user-managed")])
        # A new default version is what counts.
        self.iam.create_policy_version(PolicyArn=managed["Arn"], PolicyDocument=policy(allow("logs:*", "*")), SetAsDefault=True)
        self.assertEqual(self.decisions(arn, ["logs:DeleteLogGroup"], [stream]), {("logs:DeleteLogGroup", stream): "allowed"})

    def test_group_inline_and_attached_policies_count(self) -> None:
        arn = self.user("sim-grouped")
        self.iam.create_group(GroupName="sim-group")
        self.iam.add_user_to_group(GroupName="sim-group", UserName="sim-grouped")
        self.iam.put_group_policy(GroupName="sim-group", PolicyName="sim-group-ecs", PolicyDocument=policy(allow("ecs:RunTask")))
        attached = self.iam.create_policy(PolicyName="sim-group-ecr", PolicyDocument=policy(allow("ecr:GetAuthorizationToken")))["Policy"]
        self.iam.attach_group_policy(GroupName="sim-group", PolicyArn=attached["Arn"])
        results = self.simulate(arn, ["ecs:RunTask", "ecr:GetAuthorizationToken", "ecr:PutImage"])
        self.assertEqual([r["EvalDecision"] for r in results], ["allowed", "allowed", "implicitDeny"])
        self.assertEqual(results[0]["MatchedStatements"][0]["SourcePolicyType"], "group")
        self.assertEqual(results[1]["MatchedStatements"][0]["SourcePolicyType"], "user-managed")
        # The group's own ARN can be simulated too.
        group = self.iam.get_group(GroupName="sim-group")["Group"]["Arn"]
        self.assertEqual(self.decisions(group, ["ecs:RunTask"]), {("ecs:RunTask", "*"): "allowed"})

    def test_a_role_arn_uses_the_roles_policies_and_permissions_boundary(self) -> None:
        trust = policy({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"})
        self.iam.create_role(RoleName="sim-role", AssumeRolePolicyDocument=trust)
        self.iam.put_role_policy(RoleName="sim-role", PolicyName="sim-role-s3", PolicyDocument=DATA_POLICY)
        attached = self.iam.create_policy(PolicyName="sim-role-logs", PolicyDocument=policy(allow("logs:*")))["Policy"]
        self.iam.attach_role_policy(RoleName="sim-role", PolicyArn=attached["Arn"])
        key = f"arn:aws:s3:::{BUCKET}/k"
        results = self.simulate(role_arn("sim-role"), ["s3:GetObject", "logs:PutLogEvents", "ecs:StopTask"], [key])
        self.assertEqual([r["EvalDecision"] for r in results], ["allowed", "allowed", "implicitDeny"])
        self.assertEqual(results[0]["MatchedStatements"][0]["SourcePolicyType"], "role")
        self.assertNotIn("PermissionsBoundaryDecisionDetail", results[0])
        # A permissions boundary caps what the role's policies allow.
        boundary = self.iam.create_policy(PolicyName="sim-boundary", PolicyDocument=policy(allow("s3:*")))["Policy"]
        self.iam.put_role_permissions_boundary(RoleName="sim-role", PermissionsBoundary=boundary["Arn"])
        results = self.simulate(role_arn("sim-role"), ["s3:GetObject", "logs:PutLogEvents"], [key])
        self.assertEqual([r["EvalDecision"] for r in results], ["allowed", "implicitDeny"])
        self.assertEqual([r["PermissionsBoundaryDecisionDetail"]["AllowedByPermissionsBoundary"] for r in results], [True, False])

    def test_wildcards_in_actions_and_resources(self) -> None:
        arn = self.user("sim-wild", policy(
            allow(["ecs:Describe*", "s3:Get?bject"], "*"),
            allow("s3:PutObject", f"arn:aws:s3:::{BUCKET}/jobs/*"),
            {"Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "Resource": "arn:aws:ecr:*:*:repository/starburst"},
        ))
        repo = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/starburst"
        self.assertEqual(
            self.decisions(arn, ["ecs:DescribeTasks", "ecs:describeclusters", "ecs:ListTasks", "s3:GetObject", "s3:GetObjectAcl"]),
            {
                ("ecs:DescribeTasks", "*"): "allowed",
                ("ecs:describeclusters", "*"): "allowed",  # action names are case-insensitive
                ("ecs:ListTasks", "*"): "implicitDeny",
                ("s3:GetObject", "*"): "allowed",
                ("s3:GetObjectAcl", "*"): "implicitDeny",  # ? is one character
            },
        )
        jobs, elsewhere, upper = f"arn:aws:s3:::{BUCKET}/jobs/a/b", f"arn:aws:s3:::{BUCKET}/other", f"arn:aws:s3:::{BUCKET}/JOBS/a"
        self.assertEqual(self.decisions(arn, ["s3:PutObject"], [jobs, elsewhere, upper]), {
            ("s3:PutObject", jobs): "allowed",
            ("s3:PutObject", elsewhere): "implicitDeny",
            ("s3:PutObject", upper): "implicitDeny",  # resources are case-sensitive
        })
        self.assertEqual(self.decisions(arn, ["ecr:PutImage", "iam:PassRole"], [repo]), {
            ("ecr:PutImage", repo): "allowed",
            ("iam:PassRole", repo): "implicitDeny",
        })

    def test_conditions_use_the_context_entries(self) -> None:
        # The listing statement a starburst session's user gets: its own prefix only.
        bucket = f"arn:aws:s3:::{BUCKET}"
        arn = self.user("sim-cond", policy(allow("s3:ListBucket", bucket, Condition={"StringLike": {"s3:prefix": ["sessions/a/*"]}})))

        def prefix(value: str) -> dict[str, Any]:
            return {"ContextEntries": [{"ContextKeyName": "s3:prefix", "ContextKeyValues": [value], "ContextKeyType": "string"}]}

        self.assertEqual(self.simulate(arn, ["s3:ListBucket"], [bucket], **prefix("sessions/a/x"))[0]["EvalDecision"], "allowed")
        self.assertEqual(self.simulate(arn, ["s3:ListBucket"], [bucket], **prefix("sessions/b/x"))[0]["EvalDecision"], "implicitDeny")
        missing = self.simulate(arn, ["s3:ListBucket"], [bucket])[0]
        self.assertEqual((missing["EvalDecision"], missing["MissingContextValues"]), ("implicitDeny", ["s3:prefix"]))

    # -- the API ----------------------------------------------------------------------

    def test_unknown_and_non_iam_arns_are_refused_as_aws_does(self) -> None:
        message = self.rejected("NoSuchEntity", 404, lambda: self.simulate(user_arn("sim-nobody"), ["s3:GetObject"]))
        self.assertIn("sim-nobody", message)
        self.rejected("NoSuchEntity", 404, lambda: self.simulate(role_arn("sim-no-role"), ["s3:GetObject"]))
        # The identity moto gives the default "testing" keys is not an IAM entity.
        moto = self.emu.client("sts").get_caller_identity()["Arn"]
        self.rejected("InvalidInput", 400, lambda: self.simulate(moto, ["s3:GetObject"]))
        self.rejected("InvalidInput", 400, lambda: self.simulate(f"arn:aws:sts::{ACCOUNT}:assumed-role/r/session", ["s3:GetObject"]))

    def test_a_user_simulates_itself_with_its_own_keys(self) -> None:
        # The pre-flight: GetCallerIdentity with the user's keys names the user...
        self.user("sim-self", DATA_POLICY)
        key = self.iam.create_access_key(UserName="sim-self")["AccessKey"]
        creds = dict(endpoint_url=self.emu.url, region_name=REGION, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        me = boto3.client("sts", **creds).get_caller_identity()
        self.assertEqual((me["Arn"], me["Account"]), (user_arn("sim-self"), ACCOUNT))
        # ...and that ARN is what it simulates.
        reply = boto3.client("iam", **creds).simulate_principal_policy(PolicySourceArn=me["Arn"], ActionNames=["ecs:RunTask", "ecs:StopTask"])
        self.assertEqual([r["EvalDecision"] for r in reply["EvaluationResults"]], ["allowed", "implicitDeny"])

    def test_results_are_paged_with_max_items_and_marker(self) -> None:
        arn = self.user("sim-paged", DATA_POLICY)
        actions = ["ecs:RunTask", "ecs:StopTask", "s3:GetObject", "s3:PutObject", "s3:ListBucket"]
        first = self.iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions, MaxItems=2)
        self.assertTrue(first["IsTruncated"])
        self.assertEqual([r["EvalActionName"] for r in first["EvaluationResults"]], actions[:2])
        pages = self.iam.get_paginator("simulate_principal_policy").paginate(PolicySourceArn=arn, ActionNames=actions, PaginationConfig={"PageSize": 2})
        self.assertEqual([r["EvalActionName"] for page in pages for r in page["EvaluationResults"]], actions)

    def test_the_reply_is_the_query_protocols_xml(self) -> None:
        arn = self.user("sim-xml", DATA_POLICY)
        bodies: list[bytes] = []
        iam = self.emu.client("iam")
        iam.meta.events.register("after-call.iam.SimulatePrincipalPolicy", lambda http_response, **_: bodies.append(http_response.content))
        iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:CreateBucket"])
        xml = re.sub(r">\s+<", "><", bodies[0].decode())  # as compact as moto's PRETTIFY_RESPONSES leaves it
        for part in (
            '<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><SimulatePrincipalPolicyResult>',
            "<EvaluationResults><member><EvalActionName>s3:CreateBucket</EvalActionName>",
            "<EvalResourceName>*</EvalResourceName><EvalDecision>implicitDeny</EvalDecision>",
            "<IsTruncated>false</IsTruncated>",
            "</SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>",
        ):
            self.assertIn(part, xml)


class EvaluationTest(unittest.TestCase):
    """The statement logic in process, for the cases the API tests above do not reach."""

    def decide(self, document: str, action: str, resource: str = "*", **context: Any) -> tuple[str, list[str]]:
        entries = {k.replace("__", ":"): v if isinstance(v, list) else [v] for k, v in context.items()}
        result = evaluate([Source("p", "user", document)], None, action, resource, {k.lower(): v for k, v in entries.items()})
        return result["EvalDecision"], result["MissingContextValues"]

    def test_not_resource_and_deny(self) -> None:
        doc = policy(allow("s3:*"), {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"arn:aws:s3:::{BUCKET}/*"]})
        self.assertEqual(self.decide(doc, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/k")[0], "allowed")
        self.assertEqual(self.decide(doc, "s3:GetObject", "arn:aws:s3:::other/k")[0], "explicitDeny")

    def test_patterns_are_not_regular_expressions(self) -> None:
        doc = policy(allow("s3:GetObject", "arn:aws:s3:::my.bucket/a+b"))
        self.assertEqual(self.decide(doc, "s3:GetObject", "arn:aws:s3:::my.bucket/a+b")[0], "allowed")
        self.assertEqual(self.decide(doc, "s3:GetObject", "arn:aws:s3:::myXbucket/a+b")[0], "implicitDeny")
        self.assertEqual(self.decide(doc, "s3:GetObject", "arn:aws:s3:::my.bucket/aab")[0], "implicitDeny")

    def test_a_failed_condition_on_an_allow_is_no_deny(self) -> None:
        doc = policy(allow("s3:*", Condition={"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}))
        self.assertEqual(self.decide(doc, "s3:GetObject", aws__RequestedRegion="us-east-1"), ("implicitDeny", []))
        self.assertEqual(self.decide(doc, "s3:GetObject", aws__RequestedRegion="eu-west-1"), ("allowed", []))

    def test_missing_keys_negated_operators_if_exists_and_set_qualifiers(self) -> None:
        def decision(condition: dict[str, Any], **context: Any) -> str:
            return self.decide(policy(allow("s3:*", Condition=condition)), "s3:GetObject", **context)[0]

        self.assertEqual(decision({"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}), "allowed")
        self.assertEqual(decision({"StringEqualsIfExists": {"aws:RequestedRegion": "eu-west-1"}}), "allowed")
        self.assertEqual(decision({"StringEqualsIfExists": {"aws:RequestedRegion": "eu-west-1"}}, aws__RequestedRegion="us-east-1"), "implicitDeny")
        self.assertEqual(decision({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}), "allowed")
        self.assertEqual(decision({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, aws__TagKeys=["a", "c"]), "implicitDeny")
        self.assertEqual(decision({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}), "implicitDeny")
        self.assertEqual(decision({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}, aws__TagKeys=["c", "b"]), "allowed")
        self.assertEqual(decision({"Null": {"aws:TokenIssueTime": "true"}}), "allowed")
        self.assertEqual(decision({"Null": {"aws:TokenIssueTime": "true"}}, aws__TokenIssueTime="2026-01-01T00:00:00Z"), "implicitDeny")

    def test_typed_operators(self) -> None:
        def decision(condition: dict[str, Any], **context: Any) -> str:
            return self.decide(policy(allow("s3:*", Condition=condition)), "s3:GetObject", **context)[0]

        self.assertEqual(decision({"NumericLessThan": {"s3:max-keys": "10"}}, **{"s3__max-keys": "9"}), "allowed")
        self.assertEqual(decision({"NumericLessThan": {"s3:max-keys": "10"}}, **{"s3__max-keys": "10"}), "implicitDeny")
        self.assertEqual(decision({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, aws__CurrentTime="2026-06-01T12:00:00Z"), "allowed")
        self.assertEqual(decision({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}, aws__CurrentTime="2031-06-01T12:00:00Z"), "implicitDeny")
        self.assertEqual(decision({"Bool": {"aws:SecureTransport": True}}, aws__SecureTransport="true"), "allowed")
        self.assertEqual(decision({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, aws__SourceIp="10.1.2.3"), "allowed")
        self.assertEqual(decision({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, aws__SourceIp="10.1.2.3"), "implicitDeny")
        role = f"arn:aws:iam::{ACCOUNT}:role/starburst-task"
        self.assertEqual(decision({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/starburst-*"}}, aws__PrincipalArn=role), "allowed")
        self.assertEqual(decision({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/other-*"}}, aws__PrincipalArn=role), "implicitDeny")

    def test_policy_variables_come_from_the_context(self) -> None:
        doc = policy(allow("s3:*", f"arn:aws:s3:::{BUCKET}/home/${{aws:username}}/*"))
        mine, theirs = f"arn:aws:s3:::{BUCKET}/home/ann/x", f"arn:aws:s3:::{BUCKET}/home/bob/x"
        self.assertEqual(self.decide(doc, "s3:GetObject", mine, aws__username="ann"), ("allowed", []))
        self.assertEqual(self.decide(doc, "s3:GetObject", theirs, aws__username="ann"), ("implicitDeny", []))
        self.assertEqual(self.decide(doc, "s3:GetObject", mine), ("implicitDeny", ["aws:username"]))


if __name__ == "__main__":
    unittest.main()
