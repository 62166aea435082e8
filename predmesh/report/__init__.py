"""A static, self-contained HTML report of one model (`predmesh report MODEL`).

`collect.collect(query, model, ...)` gathers the numbers from the analytics store's views
(services/sink/core/views.py, through any `query(sql) -> rows` function: the CLI passes
AnalyticsService.Query) and the drift monitor; `page.render(data)` turns them into one HTML
file with inline SVG charts (no external scripts, styles or fonts). No gRPC imports here.
"""
