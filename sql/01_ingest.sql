-- cdviz.ingest(): one event, dedup, errors with SQLSTATE, message and hint.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- a CDEvents 0.5.1 service.deployed event
SELECT '{
  "context": {"specversion": "0.5.1", "id": "evt-1", "source": "/ci/deployer",
              "type": "dev.cdevents.service.deployed.0.3.0",
              "timestamp": "2024-05-02T10:00:00.123456Z", "chainId": "chain-1"},
  "subject": {"id": "checkout", "source": "/ci/deployer",
              "content": {"environment": {"id": "prod"},
                          "artifactId": "pkg:oci/checkout@sha256%3Aabc"}}}' AS deployed \gset
SELECT cdviz.ingest(:'deployed') AS first_id;

-- a retransmission stores nothing and answers the same id
SELECT cdviz.ingest(:'deployed') AS same_id;

-- same id and source at another time is another event
SELECT cdviz.ingest('{
  "context": {"specversion": "0.5.1", "id": "evt-1", "source": "/ci/deployer",
              "type": "dev.cdevents.service.deployed.0.3.0",
              "timestamp": "2024-06-02T10:00:00+02:00"},
  "subject": {"id": "checkout",
              "content": {"environment": {"id": "prod"}, "artifactId": "pkg:oci/checkout@sha256%3Adef"}}}') AS second_id;

-- the normalised columns
SELECT id, "timestamp", context_id, context_source, type, subject, predicate,
       type_version, spec_version, subject_id, chain_id
FROM cdviz.cdevents_lake ORDER BY id;

-- 0.3.0 (context.version, subject.type) and 0.4.1 events, and a custom one
SELECT cdviz.ingest('{"context": {"version": "0.3.0", "id": "old-1", "source": "/jenkins",
  "type": "dev.cdevents.pipelinerun.finished.0.1.1", "timestamp": "2023-03-20T14:27:05Z"},
  "subject": {"id": "build-7", "type": "pipelineRun",
  "content": {"pipelineName": "main", "url": "https://ci/7", "outcome": "success"}}}') > 0 AS v03_stored;
SELECT cdviz.ingest('{"context": {"version": "0.4.1", "id": "mid-1", "source": "/tekton",
  "type": "dev.cdevents.testcaserun.finished.0.1.0", "timestamp": "2024-01-05T08:00:00Z"},
  "subject": {"id": "tc-1", "source": "/tekton", "type": "testCaseRun",
  "content": {"outcome": "pass", "environment": {"id": "ci"}}}}') > 0 AS v04_stored;
SELECT cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "c-1", "source": "/mytool",
  "type": "dev.cdeventsx.mytool-widget.built.0.1.0", "timestamp": "2024-02-01T00:00:00Z"},
  "subject": {"id": "w-1", "content": {"anything": [1, 2, 3]}}}') > 0 AS custom_stored;
SELECT type, subject, predicate, type_version, spec_version
FROM cdviz.cdevents_lake WHERE context_id IN ('old-1', 'mid-1', 'c-1') ORDER BY id;

-- invalid events: SQLSTATE 22023, first problem in the message, all in DETAIL
SELECT cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "", "source": "/s",
  "type": "dev.cdevents.service.deployed.0.3.0", "timestamp": "2024-02-30T00:00:00Z"},
  "subject": {"id": "svc", "content": {"environment": {"id": "prod"}}}}');
SELECT cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "x", "source": "/s",
  "type": "dev.cdevents.service.deployed.0.3.0", "timestamp": "2024-02-01T00:00:00Z",
  "extra": true}, "subject": {"id": "svc", "content": {"environment": {"id": "prod"},
  "artifactId": "pkg:oci/a"}}}');
SELECT cdviz.ingest('[1, 2]');
SELECT cdviz.ingest('{"context": {"specversion": "0.5.1", "id": "x", "source": "/s",
  "type": "dev.cdevents.nothing.happened.0.1.0", "timestamp": "2024-02-01T00:00:00Z"},
  "subject": {"id": "svc"}}');
DO $$
BEGIN
	PERFORM cdviz.ingest('{"context": {}}');
EXCEPTION WHEN invalid_parameter_value THEN
	RAISE NOTICE 'caught SQLSTATE %', SQLSTATE;
END
$$;

-- nothing of the failed calls was stored, not even as a dead letter
SELECT count(*) AS lake_rows FROM cdviz.cdevents_lake;
SELECT count(*) AS dead_letters FROM cdviz.rejected_events;

-- monthly partitions were created on demand (UTC months)
SELECT c.relname
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'cdviz.cdevents_lake'::regclass ORDER BY 1;
