-- cdviz.validate() and the three validation modes.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- valid: no rows
SELECT * FROM cdviz.validate('{"context": {"specversion": "0.5.1", "id": "v-1", "source": "/s",
  "type": "dev.cdevents.incident.detected.0.3.0", "timestamp": "2024-03-01T10:00:00Z"},
  "subject": {"id": "inc-1", "content": {"description": "down", "environment": {"id": "prod"}}}}');

-- every problem, with its path
SELECT * FROM cdviz.validate('{"context": {"specversion": 5, "id": "", "source": "not a uri ref",
  "type": "dev.cdevents.incident.detected.0.3.0", "timestamp": "2024-03-01 10:00:00",
  "links": [{"linkType": "RELATION"}, {"linkType": "PATH", "from": {"contextId": ""}}]},
  "subject": {"id": "inc-1", "content": {"environment": {"id": 42}, "ticketURI": "::"}},
  "customData": 12, "unexpected": null}');

SELECT * FROM cdviz.validate('"just a string"');
SELECT * FROM cdviz.validate('{}');

-- an event with an unknown field and a wrong enum value
\set ev '{"context": {"specversion": "0.5.1", "id": "m-1", "source": "/s", "type": "dev.cdevents.testcaserun.finished.0.3.0", "timestamp": "2024-03-01T10:00:00Z", "note": "x"}, "subject": {"id": "tc-9", "content": {"outcome": "green"}}}'
SELECT * FROM cdviz.validate(:'ev');
SET cdviz.validation = 'lenient';
SELECT * FROM cdviz.validate(:'ev');
-- lenient still wants required fields with the right types
SELECT * FROM cdviz.validate('{"context": {"specversion": "0.5.1", "id": "m-2", "source": "/s",
  "type": "dev.cdevents.testcaserun.finished.0.3.0", "timestamp": "2024-03-01T10:00:00Z"},
  "subject": {"id": "tc-9", "content": {"outcome": 1}}}');
-- and accepts unknown types with the generic context and subject rules
SELECT * FROM cdviz.validate('{"context": {"specversion": "0.5.1", "id": "m-3", "source": "/s",
  "type": "dev.cdevents.rocket.launched.0.1.0", "timestamp": "2024-03-01T10:00:00Z"},
  "subject": {"id": "r-1"}}');
SET cdviz.validation = 'off';
SELECT * FROM cdviz.validate(:'ev');
-- off still needs what the lake stores
SELECT * FROM cdviz.validate('{"context": {"id": "m-4", "source": "/s", "type": "something", "timestamp": "2024-03-01T10:00:00Z"}}');
SELECT cdviz.ingest('{"context": {"id": "m-5", "source": "/s", "type": "dev.cdevents.rocket.launched.0.1.0", "timestamp": "2024-03-01T10:00:00Z"}}') > 0 AS stored_when_off;
RESET cdviz.validation;

-- strict: a known subject and predicate with an unknown version gets the
-- generic rules; an unknown subject is refused
SELECT * FROM cdviz.validate('{"context": {"specversion": "0.5.1", "id": "m-6", "source": "/s",
  "type": "dev.cdevents.service.deployed.0.9.0", "timestamp": "2024-03-01T10:00:00Z"},
  "subject": {"id": "svc", "content": {"whatever": true}}}');
SELECT * FROM cdviz.validate('{"context": {"specversion": "0.5.1", "id": "m-7", "source": "/s",
  "type": "dev.cdevents.rocket.launched.0.1.0", "timestamp": "2024-03-01T10:00:00Z"},
  "subject": {"id": "r-1"}}');

-- only superusers may change the mode
CREATE ROLE cdviz_regress_user;
SET ROLE cdviz_regress_user;
SET cdviz.validation = 'off';
RESET ROLE;
DROP ROLE cdviz_regress_user;
SHOW cdviz.validation;
