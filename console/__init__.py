"""The staff console, downstream of the dispatcher: the pages and admin API of the registry,
incidents, charts, reports and accounts, the family page, its auth, throttle and static assets,
and the internet-facing webhook app. It may import the dispatcher, detectors, ingest, devices and
foundation; only the top layer (`eldercare`) imports it."""
