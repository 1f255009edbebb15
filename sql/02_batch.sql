-- cdviz.ingest_batch(): valid events stored in one statement, invalid ones
-- kept as dead letters, duplicates counted; replay after a fix.
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT * FROM cdviz.ingest_batch('[
  {"context": {"specversion": "0.5.1", "id": "b-1", "source": "/gh", "type": "dev.cdevents.pipelinerun.started.0.3.0", "timestamp": "2024-03-01T10:00:00Z"},
   "subject": {"id": "run-1", "content": {"pipelineName": "build", "uri": "https://gh/run/1"}}},
  {"context": {"specversion": "0.5.1", "id": "b-2", "source": "/gh", "type": "dev.cdevents.pipelinerun.finished.0.3.0", "timestamp": "2024-03-01T10:05:00Z"},
   "subject": {"id": "run-1", "content": {"pipelineName": "build", "outcome": "success"}}},
  {"context": {"specversion": "0.5.1", "id": "b-1", "source": "/gh", "type": "dev.cdevents.pipelinerun.started.0.3.0", "timestamp": "2024-03-01T10:00:00Z"},
   "subject": {"id": "run-1", "content": {"pipelineName": "build", "uri": "https://gh/run/1"}}},
  {"context": {"specversion": "0.5.1", "id": "b-3", "source": "/gh", "type": "dev.cdevents.pipelinerun.finished.0.3.0", "timestamp": "2024-03-01T10:06:00Z"},
   "subject": {"id": "run-2", "content": {"pipelineName": "build", "outcome": "success", "buildLog": "x"}}},
  "not an event",
  {"context": {"specversion": "0.5.1", "id": "b-4", "source": "/gh", "type": "dev.cdevents.pipelinerun.queued.0.3.0", "timestamp": "yesterday"},
   "subject": {"id": "run-3", "content": {}}}
]', 'nightly-import');

-- again: everything valid is now a duplicate, the bad ones are kept again
SELECT * FROM cdviz.ingest_batch('[
  {"context": {"specversion": "0.5.1", "id": "b-1", "source": "/gh", "type": "dev.cdevents.pipelinerun.started.0.3.0", "timestamp": "2024-03-01T10:00:00Z"},
   "subject": {"id": "run-1", "content": {"pipelineName": "build", "uri": "https://gh/run/1"}}}
]');

SELECT context_id, predicate, subject_id FROM cdviz.cdevents_lake ORDER BY id;

SELECT id, origin, origin_ref, raw, problems FROM cdviz.rejected_events ORDER BY id;

-- an object is a batch of one; an empty array stores nothing
SELECT * FROM cdviz.ingest_batch('{"context": {"specversion": "0.5.1", "id": "b-5", "source": "/gh",
  "type": "dev.cdevents.branch.created.0.3.0", "timestamp": "2024-03-02T00:00:00Z"},
  "subject": {"id": "feature-x", "content": {"repository": {"id": "shop"}}}}');
SELECT * FROM cdviz.ingest_batch('[]');

-- replay: still invalid in strict mode, the problems are refreshed
SELECT cdviz.replay_rejected(1);
-- lenient mode accepts the unknown field; the dead letter is marked replayed
SET cdviz.validation = 'lenient';
SELECT cdviz.replay_rejected(1) > 0 AS replayed;
SELECT id, replayed_at IS NOT NULL AS replayed, replayed_event_id IS NOT NULL AS has_event
FROM cdviz.rejected_events ORDER BY id;
-- replaying again answers the same event
SELECT cdviz.replay_rejected(1) = (SELECT replayed_event_id FROM cdviz.rejected_events WHERE id = 1) AS idempotent;
-- bulk replay: the rest cannot be events in any mode
SELECT * FROM cdviz.replay_rejected();
SELECT * FROM cdviz.replay_rejected('sql', now() - interval '1 hour');
SELECT cdviz.replay_rejected(999);
RESET cdviz.validation;

-- one statement storing the same batch three times ((f).* calls f once per
-- column): the later calls find the rows the first one stored
SELECT (cdviz.ingest_batch('[{"context": {"specversion": "0.5.1", "id": "t-1", "source": "/gh",
  "type": "dev.cdevents.branch.deleted.0.3.0", "timestamp": "2024-03-03T00:00:00Z"},
  "subject": {"id": "feature-y", "content": {"repository": {"id": "shop"}}}}]')).*;
SELECT count(*) AS stored_once FROM cdviz.cdevents_lake WHERE context_id = 't-1';
SELECT count(*) AS no_dead_letter FROM cdviz.rejected_events WHERE raw LIKE '%t-1%';
