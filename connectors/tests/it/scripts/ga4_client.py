"""Google's official GA4 Data API client (google-analytics-data) against the GA4 simulator.

Runs the report tidemark runs (date, session source/medium/campaign; sessions, users, key
events, purchase revenue) through the library's REST transport, paging with limit/offset
until rowCount, and prints a JSON summary: rows, pages, totals, the row count the server
declared and the property quota the library parsed.

usage: ga4_client.py BASE_URL TOKEN PROPERTY START END PAGE_ROWS
"""

import json
import sys

from google.analytics.data_v1beta import BetaAnalyticsDataClient
from google.analytics.data_v1beta.services.beta_analytics_data.transports.rest import (
    BetaAnalyticsDataRestTransport,
)
from google.analytics.data_v1beta.types import DateRange, Dimension, Metric, RunReportRequest
from google.oauth2.credentials import Credentials

base, token, prop, start, end, page_rows = sys.argv[1:7]
scheme, host = base.split("://", 1)
transport = BetaAnalyticsDataRestTransport(
    host=host, credentials=Credentials(token=token), url_scheme=scheme
)
client = BetaAnalyticsDataClient(transport=transport)

rows, pages, offset = [], 0, 0
while True:
    answer = client.run_report(
        RunReportRequest(
            property=f"properties/{prop}",
            date_ranges=[DateRange(start_date=start, end_date=end)],
            dimensions=[Dimension(name=n) for n in ["date", "sessionSource", "sessionMedium", "sessionCampaignName"]],
            metrics=[Metric(name=n) for n in ["sessions", "totalUsers", "keyEvents", "purchaseRevenue"]],
            limit=int(page_rows),
            offset=offset,
            return_property_quota=True,
        )
    )
    pages += 1
    rows.extend(answer.rows)
    offset += len(answer.rows)
    if not answer.rows or offset >= answer.row_count:
        break

print(
    json.dumps(
        {
            "rows": len(rows),
            "pages": pages,
            "row_count": answer.row_count,
            "sessions": sum(int(r.metric_values[0].value) for r in rows),
            "key_events": sum(int(r.metric_values[2].value) for r in rows),
            "revenue": round(sum(float(r.metric_values[3].value) for r in rows), 6),
            "currency": answer.metadata.currency_code,
            "tokens_per_hour_remaining": answer.property_quota.tokens_per_hour.remaining,
            "first_date": rows[0].dimension_values[0].value if rows else None,
        }
    )
)
