-- operations.md checks the sinks of a restored server: one of them is "hub"
SELECT cdviz.create_sink('hub', 'http', 'https://hub.example/cdevents', '{"mode": "batch"}', paused => true);
