"""Parse a googleAds:searchStream REST answer (read from stdin) into the official
SearchGoogleAdsStreamResponse protobuf of the given API version, from Google's own client
library (PyPI google-ads), refusing unknown fields: a field the simulator invents, misspells
or that the version renamed fails here. Prints a JSON summary of what parsed."""
import json
import sys
import importlib

from google.protobuf import json_format

version = sys.argv[1]
module = importlib.import_module(f"google.ads.googleads.{version}.services.types.google_ads_service")
Response = module.SearchGoogleAdsStreamResponse

batches = json.load(sys.stdin)
rows = impressions = cost_micros = 0
ad_ids = set()
for batch in batches:
    message = Response.pb(Response())
    json_format.Parse(json.dumps(batch), message, ignore_unknown_fields=False)
    for row in message.results:
        rows += 1
        impressions += row.metrics.impressions
        cost_micros += row.metrics.cost_micros
        ad_ids.add(row.ad_group_ad.ad.id)
    if not message.field_mask.paths:
        raise SystemExit("a batch with results has no fieldMask")

import google.ads.googleads.client as client
print(json.dumps({
    "batches": len(batches),
    "rows": rows,
    "impressions": impressions,
    "cost_micros": cost_micros,
    "ads": len(ad_ids),
    "library_versions": client._VALID_API_VERSIONS,
}))
