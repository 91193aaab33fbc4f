"""iam:SimulatePrincipalPolicy for moto's IAM, patched in process on import.

moto 5.2.5 has no policy simulator, yet a permissions pre-flight asks IAM exactly that: "may
this principal call these actions on these resources?". Importing this module adds
SimulatePrincipalPolicy to moto's IAM (a method on `IamResponse`, which moto dispatches to by
the query protocol's `Action`; the reply is serialized by moto from botocore's model, so it
has the shape SDKs parse), following the AWS API reference and the IAM policy evaluation
logic for a principal's identity-based policies in its own account:

- `PolicySourceArn` is a user (its inline and attached policies, and those of its groups), a
  role (inline and attached) or a group. An entity that does not exist is NoSuchEntity (404);
  an ARN that names no IAM user, role or group (an STS assumed-role ARN, the root, moto's
  `arn:aws:sts::...:user/moto` of the default "testing" keys) is InvalidInput, as on AWS.
- Every action of `ActionNames` is evaluated against every resource of `ResourceArns`
  (default `*`, which a policy resource matches only when its pattern matches the string
  `*`, as in AWS's simulator): `explicitDeny` when a Deny statement applies, else `allowed`
  when an Allow statement applies, else `implicitDeny`. A role's permissions boundary (or
  `PermissionsBoundaryPolicyInputList`) must also allow; `PolicyInputList` adds policies.
- Statements honour Action/NotAction (case-insensitive, `*` and `?` wildcards),
  Resource/NotResource (case-sensitive wildcards, policy variables such as `${aws:username}`
  taken from `ContextEntries`) and Condition: the String, Numeric, Date, Bool, Binary,
  IpAddress, Arn and Null operators with `IfExists` and `ForAllValues:`/`ForAnyValue:`,
  evaluated against `ContextEntries`; a key the entries lack makes a condition false (true
  for negated operators, `...IfExists` and `ForAllValues:`) and is reported in
  `MissingContextValues`. No context key is filled in by the emulator itself.
- `MatchedStatements` names the deciding statements (the Deny ones for explicitDeny) by
  policy name and type (`user`, `group`, `role`, `user-managed`, `aws-managed`, `none` for
  `PolicyInputList`) with their line and column in the policy document.
- Results are paged with `MaxItems` (default 100, as for every IAM list) and `Marker`.

Not simulated: resource-based policies (`ResourcePolicy`) and `PolicyExclusionList` are
answered InvalidInput rather than ignored, so a test never trusts a half simulation;
`CallerArn`, `ResourceOwner` and `ResourceHandlingOption` only matter with a resource policy
and are ignored; no SCPs, no session policies. An unknown condition operator is
PolicyEvaluation (500) instead of a guess.

moto's own evaluator (`moto.iam.access_control`, used when moto enforces IAM auth) is the
base: statements are its `IAMPolicyStatement`, with the element matching replaced because
moto's matches case-sensitively (IAM action names are not), reads `.`/`?`/`+` in a pattern as
regular-expression syntax, ignores NotResource (a Deny with NotResource allows) and condition
operators other than StringEquals (an Allow whose condition fails denies explicitly there).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from moto.core.responses import ActionResult
from moto.iam.access_control import IAMPolicyStatement
from moto.iam.exceptions import IAMException, InvalidInput, NotFoundException
from moto.iam.models import AWSManagedPolicy, IAMBackend, ManagedPolicy
from moto.iam.responses import IamResponse

DEFAULT_MAX_ITEMS = 100  # IAM's default page size


class PolicyEvaluation(IAMException):
    """IAM's PolicyEvaluationException (HTTP 500): the simulation itself failed."""

    code = "PolicyEvaluation"


# ---------------------------------------------------------------------------------------
# Policies and their statements
# ---------------------------------------------------------------------------------------


@dataclass
class Source:
    """One policy document of the simulation and how MatchedStatements names it."""

    policy_id: str  # SourcePolicyId: the policy's name, or "PolicyInputList.N"
    policy_type: str  # SourcePolicyType: user | group | role | user-managed | aws-managed | none
    document: str
    statements: list[SimulatedStatement] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            policy = json.loads(self.document)
        except ValueError:
            raise InvalidInput(f"Policy {self.policy_id} is not valid JSON.")
        raw = policy.get("Statement", []) if isinstance(policy, dict) else []
        raw = raw if isinstance(raw, list) else [raw]
        spans = _statement_spans(self.document)
        if len(spans) != len(raw):
            spans = [None] * len(raw)
        variables = policy.get("Version") == "2012-10-17"  # 2008-10-17 has no policy variables
        self.statements = [SimulatedStatement(s, self, span, variables) for s, span in zip(raw, spans)]


def _position(text: str, i: int) -> dict[str, int]:
    """Line and column (both 1-based) of offset `i`, as IAM's Position."""
    return {"Line": text.count("\n", 0, i) + 1, "Column": i - (text.rfind("\n", 0, i) + 1) + 1}


def _statement_spans(text: str) -> list[tuple[dict[str, int], dict[str, int]]]:
    """Start and end (just after the closing brace) of each statement of a policy document,
    found by walking the top-level object with the JSON decoder; [] if it cannot."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")

    def skip(i: int) -> int:
        return ws.match(text, i).end()  # type: ignore[union-attr]

    try:
        i = skip(0)
        if text[i] != "{":
            return []
        i = skip(i + 1)
        while text[i] != "}":
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            i = skip(i + 1)  # the ':'
            start = i
            _, end = decoder.raw_decode(text, start)
            if key == "Statement":
                if text[start] == "{":
                    return [(_position(text, start), _position(text, end))]
                spans = []
                j = skip(start + 1)
                while text[j] != "]":
                    _, k = decoder.raw_decode(text, j)
                    spans.append((_position(text, j), _position(text, k)))
                    j = skip(k)
                    j = skip(j + 1) if text[j] == "," else j
                return spans
            i = skip(end)
            i = skip(i + 1) if text[i] == "," else i
    except (ValueError, IndexError):
        pass
    return []


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """An IAM wildcard pattern: `*` any characters (also `/` and `:`), `?` one; the rest literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# `${key}` or `${key, 'default'}`; `${*}`, `${?}` and `${$}` stand for the literal characters.
_VARIABLE = re.compile(r"\$\{\s*([^},']+?)\s*(?:,\s*'([^']*)'\s*)?\}")
_LITERALS = {"*": "*", "?": "?", "$": "$"}


@dataclass
class Call:
    """One simulated request: an action on a resource, with the request context."""

    action: str
    resource: str
    context: dict[str, list[str]]  # lower-cased key -> values (IAM keys are case-insensitive)
    missing: set[str]  # keys the policies wanted and the context lacked (filled in)


def _values(value: Any) -> list[str]:
    """A condition's or element's value(s) as strings (JSON true -> "true", 5 -> "5")."""
    items = value if isinstance(value, list) else [value]
    return ["true" if v is True else "false" if v is False else str(v) for v in items]


class SimulatedStatement(IAMPolicyStatement):
    """A statement of an identity-based policy, decided for one `Call`."""

    def __init__(self, statement: Any, source: Source, span: tuple[dict[str, int], dict[str, int]] | None, variables: bool) -> None:
        super().__init__(statement if isinstance(statement, dict) else {})
        self.source = source
        self.span = span
        self.variables = variables
        self.effect = self._statement.get("Effect")

    def matched(self) -> dict[str, Any]:
        """This statement as an entry of MatchedStatements."""
        entry: dict[str, Any] = {"SourcePolicyId": self.source.policy_id, "SourcePolicyType": self.source.policy_type}
        if self.span:
            entry["StartPosition"], entry["EndPosition"] = self.span
        return entry

    def applies(self, call: Call) -> bool:
        if "NotAction" in self._statement:
            if self._check_element_matches("NotAction", call.action):
                return False
        elif "Action" not in self._statement or not self._check_element_matches("Action", call.action):
            return False
        if "NotResource" in self._statement:
            if self._resource_matches("NotResource", call):
                return False
        elif "Resource" not in self._statement or not self._resource_matches("Resource", call):
            return False
        return self._conditions_hold(call)

    # -- elements ---------------------------------------------------------------------

    def _check_element_matches(self, statement_element: Any, value: str) -> bool:
        """Action and NotAction: IAM compares action names case-insensitively."""
        return any(_glob(p, True).fullmatch(value) for p in _values(self._statement[statement_element]))

    def _resource_matches(self, element: str, call: Call) -> bool:
        for pattern in _values(self._statement[element]):
            regex = self._pattern(pattern, call)
            if regex is not None and regex.fullmatch(call.resource):
                return True
        return False

    def _pattern(self, pattern: str, call: Call) -> re.Pattern[str] | None:
        """A Resource pattern with its policy variables resolved from the context, as a
        regular expression; None when a variable has no value."""
        if not self.variables or "${" not in pattern:
            return _glob(pattern, False)
        parts: list[str] = []
        last = 0
        for m in _VARIABLE.finditer(pattern):
            parts.append(_glob(pattern[last:m.start()], False).pattern)
            value = _variable(m, call)
            if value is None:
                return None
            parts.append(re.escape(value))  # a variable's value is literal, even a '*'
            last = m.end()
        parts.append(_glob(pattern[last:], False).pattern)
        return re.compile("".join(parts), re.DOTALL)

    # -- conditions -------------------------------------------------------------------

    def _conditions_hold(self, call: Call) -> bool:
        """Every operator and every key of the Condition block must hold (AND); a key's
        policy values are alternatives (OR)."""
        conditions = self._statement.get("Condition") or {}
        holds = True
        for operator, keys in conditions.items():
            for key, expected in (keys or {}).items():
                # Evaluate all of them (no short cut), so that every missing key is reported.
                holds = self._condition_holds(operator, key, _values(expected), call) and holds
        return holds

    def _condition_holds(self, operator: str, key: str, expected: list[str], call: Call) -> bool:
        actual = call.context.get(key.lower())
        if operator == "Null":  # "true": the key must be absent; "false": present
            if actual is None:
                call.missing.add(key)
            return (actual is None) == (expected[0].lower() == "true")
        m = re.fullmatch(r"(?:(ForAllValues|ForAnyValue):)?(\w+?)(IfExists)?", operator)
        if not m or m.group(2) not in _OPERATORS:
            raise PolicyEvaluation(f"The simulator of the starburst emulator does not know the condition operator {operator}.")
        qualifier, name, if_exists = m.groups()
        negated, compare, variables = _OPERATORS[name]
        if actual is None:
            call.missing.add(key)
            if if_exists or qualifier == "ForAllValues":
                return True
            return negated and qualifier != "ForAnyValue"
        patterns = [self._resolve(v, call) if variables else v for v in expected]

        def hit(value: str) -> bool:
            return any(p is not None and compare(value, p) for p in patterns)

        if qualifier == "ForAllValues":
            return all(hit(v) != negated for v in actual)
        if qualifier == "ForAnyValue":
            return any(hit(v) != negated for v in actual)
        return any(hit(v) for v in actual) != negated

    def _resolve(self, value: str, call: Call) -> str | None:
        """A condition value with its policy variables replaced (None if one has no value)."""
        if not self.variables or "${" not in value:
            return value
        parts: list[str] = []
        last = 0
        for m in _VARIABLE.finditer(value):
            resolved = _variable(m, call)
            if resolved is None:
                return None
            parts += [value[last:m.start()], resolved]
            last = m.end()
        return "".join(parts) + value[last:]


def _variable(m: re.Match[str], call: Call) -> str | None:
    """The value of the policy variable `m` matched: from the context, else its default;
    None (and the key reported missing) without either."""
    key, default = m.group(1), m.group(2)
    if key in _LITERALS:
        return _LITERALS[key]
    if call.context.get(key.lower()):
        return call.context[key.lower()][0]
    if default is not None:
        return default
    call.missing.add(key)
    return None


# -- condition operators: name -> (negated, compare(context value, policy value), variables) --


def _string_like(actual: str, pattern: str) -> bool:
    return _glob(pattern, False).fullmatch(actual) is not None


def _number(s: str) -> float:
    return float(s)


def _date(s: str) -> dt.datetime:
    """ISO 8601 (a date, or a time with or without zone; UTC when none) or epoch seconds."""
    try:
        return dt.datetime.fromtimestamp(float(s), dt.timezone.utc)
    except ValueError:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _typed(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Callable[[str, str], bool]:
    def compare(actual: str, expected: str) -> bool:
        try:
            return test(parse(actual), parse(expected))
        except (ValueError, TypeError):
            return False  # a value of the wrong type matches nothing

    return compare


def _ip(actual: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _binary(actual: str, expected: str) -> bool:
    try:
        return base64.b64decode(actual) == base64.b64decode(expected)
    except ValueError:
        return actual == expected


def _arn_like(actual: str, pattern: str) -> bool:
    """ArnEquals and ArnLike alike: each of the six colon-separated parts matches, wildcards allowed."""
    a, p = actual.split(":", 5), pattern.split(":", 5)
    return len(a) == len(p) == 6 and all(_string_like(x, y) for x, y in zip(a, p))


def _family(prefix: str, parse: Callable[[str], Any]) -> dict[str, tuple[bool, Callable[[str, str], bool], bool]]:
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "Equals": lambda a, e: a == e,
        "LessThan": lambda a, e: a < e,
        "LessThanEquals": lambda a, e: a <= e,
        "GreaterThan": lambda a, e: a > e,
        "GreaterThanEquals": lambda a, e: a >= e,
    }
    ops = {prefix + suffix: (False, _typed(parse, t), False) for suffix, t in tests.items()}
    ops[prefix + "NotEquals"] = (True, _typed(parse, tests["Equals"]), False)
    return ops


_OPERATORS: dict[str, tuple[bool, Callable[[str, str], bool], bool]] = {
    "StringEquals": (False, str.__eq__, True),
    "StringNotEquals": (True, str.__eq__, True),
    "StringEqualsIgnoreCase": (False, lambda a, e: a.casefold() == e.casefold(), True),
    "StringNotEqualsIgnoreCase": (True, lambda a, e: a.casefold() == e.casefold(), True),
    "StringLike": (False, _string_like, True),
    "StringNotLike": (True, _string_like, True),
    **_family("Numeric", _number),
    **_family("Date", _date),
    "Bool": (False, lambda a, e: a.lower() == e.lower(), True),
    "BinaryEquals": (False, _binary, False),
    "IpAddress": (False, _ip, False),
    "NotIpAddress": (True, _ip, False),
    "ArnEquals": (False, _arn_like, True),
    "ArnLike": (False, _arn_like, True),
    "ArnNotEquals": (True, _arn_like, True),
    "ArnNotLike": (True, _arn_like, True),
}


# ---------------------------------------------------------------------------------------
# The principal's policies
# ---------------------------------------------------------------------------------------

_ENTITY_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):(user|role|group)/(?:.*/)?([^/]+)")


def _managed(policy: ManagedPolicy) -> Source:
    document = next(v.document for v in policy.versions if v.is_default)
    aws = isinstance(policy, AWSManagedPolicy) or ":iam::aws:policy/" in policy.arn
    return Source(policy.name, "aws-managed" if aws else "user-managed", document)


def _policy_by_arn(backend: IAMBackend, arn: str) -> ManagedPolicy:
    policy = backend.managed_policies.get(arn) or getattr(backend, "aws_managed_policies", {}).get(arn)
    if policy is None:
        raise NotFoundException(f"Policy {arn} does not exist or is not attachable.")
    return policy


def principal_policies(backend: IAMBackend, arn: str) -> tuple[list[Source], Source | None]:
    """The identity-based policies of the user, role or group `arn` (a user's groups' too),
    and its permissions boundary if it has one."""
    m = _ENTITY_ARN.fullmatch(arn)
    if not m:
        raise InvalidInput(f"Invalid Entity Arn: {arn} does not clearly define entity type and name.")
    account, kind, name = m.groups()
    entities = {
        "user": backend.users.values(),
        "role": backend.roles.values(),
        "group": backend.groups.values(),
    }[kind]
    entity = next((e for e in entities if e.name == name), None)
    if entity is None or account != backend.account_id:
        raise NotFoundException(f"The {kind} with name {name} cannot be found.")
    owners = [(entity, kind)]
    if kind == "user":
        owners += [(g, "group") for g in backend.get_groups_for_user(name)]
    sources: list[Source] = []
    for owner, owner_kind in owners:
        sources += [Source(n, owner_kind, doc) for n, doc in owner.policies.items()]
        sources += [_managed(p) for p in owner.managed_policies.values()]
    boundary_arn = getattr(entity, "permissions_boundary_arn", None)
    boundary = _managed(_policy_by_arn(backend, boundary_arn)) if boundary_arn else None
    return sources, boundary


# ---------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------


def _decide(sources: list[Source], call: Call) -> tuple[str, list[SimulatedStatement]]:
    """Explicit Deny wins, then Allow, else the implicit deny."""
    allows: list[SimulatedStatement] = []
    denies: list[SimulatedStatement] = []
    for source in sources:
        for statement in source.statements:
            if statement.applies(call):
                (denies if statement.effect == "Deny" else allows).append(statement)
    if denies:
        return "explicitDeny", denies
    if allows:
        return "allowed", allows
    return "implicitDeny", []


def evaluate(sources: list[Source], boundary: Source | None, action: str, resource: str, context: dict[str, list[str]]) -> dict[str, Any]:
    """One EvaluationResult: `action` on `resource`."""
    call = Call(action, resource, context, set())
    decision, matched = _decide(sources, call)
    result: dict[str, Any] = {"EvalActionName": action, "EvalResourceName": resource}
    if boundary is not None:
        # Allowed only if the permissions boundary allows it too; a Deny there denies.
        bound, bound_matched = _decide([boundary], call)
        result["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary": bound == "allowed"}
        if bound == "explicitDeny" and decision != "explicitDeny":
            decision, matched = bound, bound_matched
        elif decision == "allowed" and bound != "allowed":
            decision, matched = "implicitDeny", []
    result["EvalDecision"] = decision
    result["MatchedStatements"] = [s.matched() for s in matched]
    result["MissingContextValues"] = sorted(call.missing)
    return result


def _context(entries: list[dict[str, Any]] | None) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    for entry in entries or []:
        name = entry.get("ContextKeyName")
        if name:
            context.setdefault(name.lower(), []).extend(entry.get("ContextKeyValues") or [])
    return context


def simulate_principal_policy(self: IamResponse) -> ActionResult:
    """IAM SimulatePrincipalPolicy (query protocol), a method of moto's IamResponse."""
    for unsupported in ("ResourcePolicy", "PolicyExclusionList"):
        if self._get_param(unsupported):
            raise InvalidInput(f"The starburst emulator does not simulate {unsupported}.")
    sources, boundary = principal_policies(self.backend, self._get_param("PolicySourceArn"))
    sources += [Source(f"PolicyInputList.{i}", "none", doc) for i, doc in enumerate(self._get_param("PolicyInputList") or [], 1)]
    boundaries = self._get_param("PermissionsBoundaryPolicyInputList") or []
    if boundaries:  # replaces the entity's own boundary, as on AWS
        boundary = Source("PermissionsBoundaryPolicyInputList.1", "none", boundaries[0])
    context = _context(self._get_param("ContextEntries"))
    results = [
        evaluate(sources, boundary, action, resource, context)
        for action in self._get_param("ActionNames") or []
        for resource in self._get_param("ResourceArns") or ["*"]
    ]
    marker = self._get_param("Marker")
    if marker is not None and not marker.isdigit():
        raise InvalidInput(f"Invalid Marker: {marker}")
    start = int(marker or 0)
    end = start + (self._get_param("MaxItems") or DEFAULT_MAX_ITEMS)
    page: dict[str, Any] = {"EvaluationResults": results[start:end], "IsTruncated": end < len(results)}
    if end < len(results):
        page["Marker"] = str(end)
    return ActionResult(page)


IamResponse.simulate_principal_policy = simulate_principal_policy  # type: ignore[attr-defined]
