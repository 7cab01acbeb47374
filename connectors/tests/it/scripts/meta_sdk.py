"""Fetch insights from the Meta simulator with Meta's official Python SDK (facebook_business),
the way its users do: an async report run polled to completion, then its pages through the
SDK's Cursor (which follows paging.next), and the synchronous edge. Prints a JSON summary."""
import json
import sys
import time

from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

base, token, account, since, until = sys.argv[1:6]
FacebookSession.GRAPH = base
# The SDK's own default version: the simulator must serve what the SDK sends.
FacebookAdsApi.init(access_token=token)
act = AdAccount("act_" + account)
fields = ["ad_id", "impressions", "clicks", "spend", "actions"]
params = {"level": "ad", "time_increment": 1, "time_range": {"since": since, "until": until}, "limit": 40}

job = act.get_insights(fields=fields, params=params, is_async=True)
for _ in range(200):
    job = job.api_get()
    if job[AdReportRun.Field.async_status] == "Job Completed" and job[AdReportRun.Field.async_percent_completion] == 100:
        break
    time.sleep(0.01)
rows = [r.export_all_data() for r in job.get_result(params={"limit": 40})]
sync_rows = [r.export_all_data() for r in act.get_insights(fields=fields, params=params)]

try:
    FacebookAdsApi.init(access_token=token, api_version="v24.0")  # expired 2026-11-10
    list(AdAccount("act_" + account).get_insights(fields=fields, params=params))
    retired = None
except FacebookRequestError as e:
    retired = {"status": e.http_status(), "code": e.api_error_code()}

try:
    FacebookAdsApi.init(access_token="not-the-token")
    list(AdAccount("act_" + account).get_insights(fields=fields, params=params))
    bad_token = None
except FacebookRequestError as e:
    bad_token = {"status": e.http_status(), "code": e.api_error_code(), "type": e.api_error_type()}

print(json.dumps({
    "async_rows": len(rows),
    "sync_rows": len(sync_rows),
    "impressions": sum(int(r["impressions"]) for r in rows),
    "same": sorted(json.dumps(r, sort_keys=True) for r in rows) == sorted(json.dumps(r, sort_keys=True) for r in sync_rows),
    "bad_token": bad_token,
    "retired_version": retired,
    "sdk_version": FacebookAdsApi.API_VERSION,
}))
