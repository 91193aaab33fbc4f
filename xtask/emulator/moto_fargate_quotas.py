"""moto's Service Quotas with what it lacks for starburst, patched in process on import.

moto 5.2.5's Service Quotas knows only the `vpc` service and only GetServiceQuota and
ListAWSDefaultServiceQuotas. Importing this module adds, following the AWS API reference:

- the Fargate vCPU quotas (L-3032A538 On-Demand, L-36FBB829 Spot; default 6, AWS's default for
  new accounts), for GetServiceQuota and GetAWSDefaultServiceQuota;
- GetAWSDefaultServiceQuota, RequestServiceQuotaIncrease and GetRequestedServiceQuotaChange,
  with requests kept per account and region, created PENDING; unknown quotas and request ids
  are NoSuchResourceException, a second open request for a quota
  ResourceAlreadyExistsException and a value not above the quota's IllegalArgumentException,
  as in AWS.

Used by the emulator (`starburst_emulator.py`) and by the quota adapter's tests
(`crates/starburst-aws/tests/support/moto_quotas.py`).
"""

import json
import time
import uuid

from moto.core.exceptions import JsonRESTError
from moto.servicequotas.exceptions import NoSuchResource
from moto.servicequotas.models import ServiceQuotasBackend
from moto.servicequotas.resources.default_quotas.vpc import VPC_DEFAULT_QUOTAS
from moto.servicequotas.responses import ServiceQuotasResponse

FARGATE_DEFAULTS = {
    "L-3032A538": ("Fargate On-Demand vCPU resource count", 6.0),
    "L-36FBB829": ("Fargate Spot vCPU resource count", 6.0),
}


def _fargate_quota(backend, code):
    name, value = FARGATE_DEFAULTS[code]
    return {
        "ServiceCode": "fargate",
        "ServiceName": "AWS Fargate",
        "QuotaArn": f"arn:aws:servicequotas:{backend.region_name}:{backend.account_id}:fargate/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


def _default_quota(self, service_code, quota_code):
    if service_code == "fargate" and quota_code in FARGATE_DEFAULTS:
        return _fargate_quota(self, quota_code)
    if service_code == "vpc":
        for quota in VPC_DEFAULT_QUOTAS:
            if quota["QuotaCode"] == quota_code:
                return quota
    raise NoSuchResource


_vpc_get_service_quota = ServiceQuotasBackend.get_service_quota


def _get_service_quota(self, service_code, quota_code):
    if service_code == "fargate":
        return _default_quota(self, service_code, quota_code)
    return _vpc_get_service_quota(self, service_code, quota_code)


def _requests(self):
    if not hasattr(self, "_starburst_requests"):
        self._starburst_requests = {}
    return self._starburst_requests


def _request_increase(self, service_code, quota_code, desired_value):
    quota = _default_quota(self, service_code, quota_code)
    if desired_value <= quota["Value"]:
        raise JsonRESTError(
            "IllegalArgumentException",
            f"The desired value {desired_value} must be above the current value {quota['Value']}.",
        )
    for open_request in _requests(self).values():
        if open_request["QuotaCode"] == quota_code and open_request["Status"] in (
            "PENDING",
            "CASE_OPENED",
        ):
            raise JsonRESTError(
                "ResourceAlreadyExistsException",
                "A request for this quota is already open.",
            )
    request = {
        "Id": uuid.uuid4().hex,
        "ServiceCode": service_code,
        "ServiceName": quota["ServiceName"],
        "QuotaCode": quota_code,
        "QuotaName": quota["QuotaName"],
        "DesiredValue": desired_value,
        "Status": "PENDING",
        "Created": time.time(),
        "LastUpdated": time.time(),
        "Requester": f"arn:aws:iam::{self.account_id}:root",
        "QuotaArn": quota["QuotaArn"],
        "GlobalQuota": False,
        "Unit": "None",
    }
    _requests(self)[request["Id"]] = request
    return request


def _get_request(self, request_id):
    try:
        return _requests(self)[request_id]
    except KeyError:
        raise NoSuchResource


ServiceQuotasBackend.get_service_quota = _get_service_quota
ServiceQuotasBackend.get_aws_default_service_quota = _default_quota
ServiceQuotasBackend.request_service_quota_increase = _request_increase
ServiceQuotasBackend.get_requested_service_quota_change = _get_request


def _r_default(self):
    params = json.loads(self.body)
    quota = self.backend.get_aws_default_service_quota(
        params.get("ServiceCode"), params.get("QuotaCode")
    )
    return json.dumps({"Quota": quota})


def _r_increase(self):
    params = json.loads(self.body)
    request = self.backend.request_service_quota_increase(
        params.get("ServiceCode"), params.get("QuotaCode"), params.get("DesiredValue")
    )
    return json.dumps({"RequestedQuota": request})


def _r_get_request(self):
    params = json.loads(self.body)
    request = self.backend.get_requested_service_quota_change(params.get("RequestId"))
    return json.dumps({"RequestedQuota": request})


ServiceQuotasResponse.get_aws_default_service_quota = _r_default
ServiceQuotasResponse.request_service_quota_increase = _r_increase
ServiceQuotasResponse.get_requested_service_quota_change = _r_get_request
