-- Demo data for scripts/run.sh: sixty days of delivery history for twelve
-- services (about 20,000 CDEvents of every subject, spec 0.3 to 0.5), sent
-- through cdviz.ingest_batch() like any client would, plus two bad inputs
-- that end up in cdviz.rejected_events.
\set ON_ERROR_STOP on
\set n 20000
\set services 12
\set days 60
\set target staging
\set staging cdviz_demo_events
\ir ../bench/gen_events.sql

-- the generator's last cycles promote into the next hours: keep the demo's
-- history in the past
DELETE FROM cdviz_demo_events WHERE (payload #>> '{context,timestamp}')::timestamptz > now();

SELECT sum(stored) AS stored, sum(duplicates) AS duplicates, sum(rejected) AS rejected
FROM (SELECT (cdviz.ingest_batch(jsonb_agg(payload ORDER BY seq), 'demo')).*
	  FROM cdviz_demo_events GROUP BY seq / 1000) b;

SELECT * FROM cdviz.ingest_batch('[
  {"context": {"specversion": "0.5.1", "id": "demo-bad-1", "source": "/demo",
               "type": "dev.cdevents.service.deployed.0.3.0", "timestamp": "last tuesday"},
   "subject": {"id": "checkout", "content": {"environment": {"id": "prod"}}}},
  "this is not an event"
]', 'demo-bad');

DROP TABLE cdviz_demo_events;

-- the summaries worker folds the derived tables just after each commit;
-- folded here too, so that everything is in place when this script ends
DO $$ BEGIN WHILE cdviz.summaries_pending() > 0 LOOP PERFORM cdviz.fold_queued_summaries(); END LOOP; END $$;
