-- Read API, part 5: the DORA metrics.
--
-- Each function takes a time range [from_ts, to_ts) and optional environment
-- and service ids (NULL: all), and returns the value, the sample it was
-- computed from and a performance tier.  The tiers turn the clusters of the
-- 2023 Accelerate State of DevOps report into thresholds; they are listed in
-- cdviz.dora_thresholds so that dashboards can show them.  DORA speaks of
-- production: pass your production environment id to compare with its tiers.
--
-- The deployment metrics read the tables kept at ingest (30_state.sql), never
-- the whole lake: environment_history by valid_from, and first_deployments
-- by deployed_at, whose rows already carry the time of their change.

CREATE VIEW cdviz.dora_thresholds (metric, tier, rule) AS
VALUES
	('deployment_frequency', 'elite', 'at least 1 deployment per day per service (on demand)'),
	('deployment_frequency', 'high', 'at least 1 per week per service'),
	('deployment_frequency', 'medium', 'at least 1 per month (30 days) per service'),
	('deployment_frequency', 'low', 'less than 1 per month per service'),
	('lead_time_for_changes', 'elite', 'median under 1 day'),
	('lead_time_for_changes', 'high', 'median under 1 week'),
	('lead_time_for_changes', 'medium', 'median under 1 month (30 days)'),
	('lead_time_for_changes', 'low', 'median of 1 month or more'),
	('change_failure_rate', 'elite', 'at most 5%'),
	('change_failure_rate', 'high', 'at most 10%'),
	('change_failure_rate', 'medium', 'at most 15%'),
	('change_failure_rate', 'low', 'over 15%'),
	('time_to_restore', 'elite', 'median under 1 hour'),
	('time_to_restore', 'high', 'median under 1 day'),
	('time_to_restore', 'medium', 'median under 1 week'),
	('time_to_restore', 'low', 'median of 1 week or more'),
	-- The 2023 report's clusters: elite less than one hour, high less than
	-- one day, medium between one day and one week, low slower still (a
	-- month or more); the gap between medium and low belongs to low here.
	('failed_deployment_recovery_time', 'elite', 'median under 1 hour'),
	('failed_deployment_recovery_time', 'high', 'median under 1 day'),
	('failed_deployment_recovery_time', 'medium', 'median under 1 week'),
	('failed_deployment_recovery_time', 'low', 'median of 1 week or more'),
	-- The 2024 report introduced rework rate without performance clusters.
	('rework_rate', NULL, 'no tiers: DORA published none for this metric (2024 report)');

COMMENT ON VIEW cdviz.dora_thresholds IS
'cdviz: the DORA tier thresholds the cdviz.dora_* functions apply (after the clusters of the 2023 Accelerate State of DevOps report, which also gives failed deployment recovery time''s); boundaries belong to the better tier. Rework rate, added by the 2024 report, has no tiers (one row, tier NULL).';
GRANT SELECT ON cdviz.dora_thresholds TO cdviz_reader;

-- The rows of one environment, or of all when environment is NULL, as
-- two branches of which the planner keeps one: for a constant it drops the
-- other, for a parameter (a lateral call per environment) it gates the
-- other off once per call.  Written "environment IS NULL OR
-- environment_id = environment", the filter is no index condition when
-- environment is a parameter, and each such call reads the window of every
-- environment instead of its (environment_id, time) index range.
CREATE FUNCTION cdviz._dora_environment_history(environment text)
RETURNS SETOF cdviz.environment_history
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT * FROM cdviz.environment_history AS h WHERE h.environment_id = environment
UNION ALL
SELECT * FROM cdviz.environment_history AS h WHERE environment IS NULL
$$;

COMMENT ON FUNCTION cdviz._dora_environment_history(text) IS
'cdviz: internal, for the DORA functions: the rows of cdviz.environment_history of one environment, or all of them when environment is NULL, in a form whose environment filter stays an index condition when the environment is a parameter';
REVOKE EXECUTE ON FUNCTION cdviz._dora_environment_history(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_environment_history(text) TO cdviz_reader;

CREATE FUNCTION cdviz._dora_first_deployments(environment text)
RETURNS SETOF cdviz.first_deployments
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT * FROM cdviz.first_deployments AS f WHERE f.environment_id = environment
UNION ALL
SELECT * FROM cdviz.first_deployments AS f WHERE environment IS NULL
$$;

COMMENT ON FUNCTION cdviz._dora_first_deployments(text) IS
'cdviz: internal, for the DORA functions: the rows of cdviz.first_deployments of one environment, or all of them when environment is NULL, in a form whose environment filter stays an index condition when the environment is a parameter';
REVOKE EXECUTE ON FUNCTION cdviz._dora_first_deployments(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_first_deployments(text) TO cdviz_reader;

-- The share of part in total, NULL without a total: the change failure
-- rate's and the rework rate's.
CREATE FUNCTION cdviz._dora_rate(part bigint, total bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN round(part::numeric / nullif(total, 0), 4);

COMMENT ON FUNCTION cdviz._dora_rate(bigint, bigint) IS
'cdviz: internal, for cdviz.dora_change_failure_rate, cdviz.dora_rework_rate and cdviz.dora_by_environment: part / total rounded to 4 decimals, NULL when total is 0';
REVOKE EXECUTE ON FUNCTION cdviz._dora_rate(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_rate(bigint, bigint) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_deployment_frequency(from_ts timestamptz, to_ts timestamptz,
												environment text DEFAULT NULL,
												service text DEFAULT NULL)
RETURNS TABLE (deployments bigint, services bigint, days numeric, per_day numeric,
			   per_week numeric, per_day_per_service numeric, deployment_days bigint,
			   sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT d.n, d.nsvc, round(d.days, 3),
	   round(d.n / d.days, 3), round(d.n * 7 / d.days, 3),
	   round(d.n / d.days / greatest(d.nsvc, 1), 3),
	   d.ndays, d.n,
	   CASE WHEN d.n / d.days / greatest(d.nsvc, 1) >= 1 THEN 'elite'
			WHEN d.n * 7 / d.days / greatest(d.nsvc, 1) >= 1 THEN 'high'
			WHEN d.n * 30 / d.days / greatest(d.nsvc, 1) >= 1 THEN 'medium'
			ELSE 'low' END
FROM (SELECT coalesce(sum(k.n), 0)::bigint AS n,
			 count(DISTINCT k.service_id) AS nsvc,
			 count(DISTINCT k.day) AS ndays,
			 extract(epoch FROM to_ts - from_ts) / 86400 AS days
	  -- counted per service and day first (hashed): the distinct counts
	  -- then sort those few rows, not every deployment
	  FROM (SELECT h.service_id, (h.valid_from AT TIME ZONE 'UTC')::date AS day, count(*) AS n
			FROM cdviz._dora_environment_history(environment) AS h
			WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
			  AND h.predicate IN ('deployed', 'upgraded')
			  AND (service IS NULL OR h.service_id = service)
			GROUP BY h.service_id, (h.valid_from AT TIME ZONE 'UTC')::date) AS k) AS d
WHERE d.days > 0
$$;

COMMENT ON FUNCTION cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text) IS
'cdviz DORA deployment frequency over [from_ts, to_ts), optionally for one environment and/or service: deployments (service deployed + upgraded events; rollbacks and removals are not deliveries), the distinct services deployed, per_day and per_week for the whole scope, per_day_per_service, deployment_days (UTC days with at least one deployment), sample_size (= deployments) and the tier, judged on per_day_per_service: elite >= 1/day, high >= 1/week, medium >= 1/30 days, else low. Limit: a service that never deployed in the range is not in the average.';
REVOKE EXECUTE ON FUNCTION cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_deployment_frequency(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_lead_time(from_ts timestamptz, to_ts timestamptz,
									 environment text DEFAULT NULL,
									 service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, unmatched bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY s.lead_time),
	   count(s.lead_time),
	   count(*) - count(s.lead_time),
	   CASE WHEN count(s.lead_time) = 0 THEN NULL
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) < interval '1 day' THEN 'elite'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) < interval '7 days' THEN 'high'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) < interval '30 days' THEN 'medium'
			ELSE 'low' END
-- lead_time is NULL for an unmatched deployment (no change, or a change
-- after the deployment): the aggregates skip it, count(*) counts it
FROM (SELECT CASE WHEN f.deployed_at - f.changed_at >= interval '0'
				  THEN f.deployed_at - f.changed_at END AS lead_time
	  FROM cdviz._dora_first_deployments(environment) AS f
	  WHERE f.deployed_at >= from_ts AND f.deployed_at < to_ts
		AND (service IS NULL OR f.service_id = service)) AS s
$$;

COMMENT ON FUNCTION cdviz.dora_lead_time(timestamptz, timestamptz, text, text) IS
'cdviz DORA lead time for changes over [from_ts, to_ts), optionally for one environment and/or service: for every artifact whose first deployed/upgraded event in an environment falls in the range, the time from its change (change.merged, else change.created) to that first deployment; the change is the one named by the artifact''s artifact.packaged event (content.change.id, matched on id alone). Returns median and p90 (percentile_cont), sample_size, unmatched (first deployments without a packaged event, a known change, or with the change after the deployment) and the tier on the median: elite < 1 day, high < 1 week, medium < 30 days, else low. Without an environment filter each environment counts its own first deployment.';
REVOKE EXECUTE ON FUNCTION cdviz.dora_lead_time(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_lead_time(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Each deployment owns the events of its (environment, service) up to the
-- next deployment there.  Failure signals (rollbacks from the history,
-- incidents' first detected and reported times from cdviz.incident_summaries,
-- found through its last_event_at index) are few:
-- each is charged to the latest deployment at or before it, found by one
-- descent of the (environment_id, service_id, valid_from) index, so the
-- deployments themselves are only counted, never sorted.
CREATE FUNCTION cdviz.dora_failure_signals(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   signal text, signal_at timestamptz, incident_id text, resolved_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- A signal is charged to the latest deployment at or before it, so a
-- signal after a key's first deployment at or after to_ts can only fail
-- that one or a later one: none of the range.  The horizon is the latest
-- such first deployment over the keys in scope (infinity when one key has
-- none): signals after it are not looked at.  For a range in the past
-- that is hours of signals instead of everything up to now.
WITH horizon AS (
	SELECT coalesce(max(coalesce(n.valid_from, 'infinity')), 'infinity') AS ts
	FROM cdviz.environment_state AS k
	LEFT JOIN LATERAL (
		SELECT h.valid_from FROM cdviz.environment_history AS h
		WHERE h.environment_id = k.environment_id AND h.service_id = k.service_id
		  AND h.valid_from >= to_ts AND h.predicate IN ('deployed', 'upgraded')
		ORDER BY h.valid_from
		LIMIT 1) AS n ON true
	WHERE (environment IS NULL OR k.environment_id = environment)
	  AND (service IS NULL OR k.service_id = service)
), signals AS (
	SELECT h.environment_id, h.service_id, h.valid_from AS ts, 'rolledback' AS signal,
		   NULL::text AS incident_id, NULL::timestamptz AS resolved_at
	FROM cdviz.environment_history AS h
	WHERE h.valid_from >= from_ts AND h.predicate = 'rolledback'
	  AND h.valid_from <= (SELECT ts FROM horizon)
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT i.environment_id, i.service_id, x.ts, x.signal, i.incident_id, i.resolved_at
	FROM cdviz.incident_summaries AS i
	CROSS JOIN LATERAL (VALUES (i.detected_at, 'detected'), (i.reported_at, 'reported')) AS x(ts, signal)
	WHERE i.last_event_at >= from_ts AND x.ts >= from_ts
	  AND x.ts <= (SELECT ts FROM horizon)
	  AND i.service_id IS NOT NULL AND i.environment_id IS NOT NULL
	  AND (environment IS NULL OR i.environment_id = environment)
	  AND (service IS NULL OR i.service_id = service)
)
SELECT d.event_id, s.environment_id, s.service_id, d.valid_from, s.signal, s.ts,
	   s.incident_id, s.resolved_at
FROM signals AS s
CROSS JOIN LATERAL (
	SELECT h.event_id, h.valid_from
	FROM cdviz.environment_history AS h
	WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
	  AND h.valid_from <= s.ts AND h.predicate IN ('deployed', 'upgraded')
	ORDER BY h.valid_from DESC, h.event_id DESC
	LIMIT 1) AS d
WHERE d.valid_from >= from_ts AND d.valid_from < to_ts
$$;

COMMENT ON FUNCTION cdviz.dora_failure_signals(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the failure signals charged to the deployments (service deployed/upgraded events) in [from_ts, to_ts), optionally of one environment and/or service, one row per signal: the deployment (event_id, environment_id, service_id, deployed_at), the signal (rolledback, or detected/reported for the first detected and first reported time of an incident naming that service and environment), signal_at, and for incidents incident_id and resolved_at (the latest resolved event, NULL while open). A signal is charged to the latest deployment of its (environment, service) at or before it. What cdviz.dora_failed_deployments and cdviz.dora_failed_deployment_recovery_time read. Example: SELECT * FROM cdviz.dora_failure_signals(now() - interval ''30 days'', now(), ''prod'') ORDER BY deployed_at;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failure_signals(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failure_signals(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_failed_deployments(from_ts timestamptz, to_ts timestamptz,
											  environment text DEFAULT NULL,
											  service text DEFAULT NULL)
RETURNS TABLE (event_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT DISTINCT s.event_id FROM cdviz.dora_failure_signals(from_ts, to_ts, environment, service) AS s
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the environment_history event ids of the deployments in [from_ts, to_ts) (optionally of one environment and/or service) that failed: a service.rolledback or an incident detected/reported on that service and environment followed them before the next deployment there (cdviz.dora_failure_signals lists the signals). What cdviz.dora_change_failure_rate and cdviz.dora_change_failures count. Example: SELECT count(*) FROM cdviz.dora_failed_deployments(now() - interval ''30 days'', now(), ''prod'');';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_change_failures(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   failed boolean)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT h.event_id, h.environment_id, h.service_id, h.valid_from,
	   h.event_id IN (SELECT f.event_id FROM cdviz.dora_failed_deployments(from_ts, to_ts, environment, service) AS f)
FROM cdviz.environment_history AS h
WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
  AND h.predicate IN ('deployed', 'upgraded')
  AND (environment IS NULL OR h.environment_id = environment)
  AND (service IS NULL OR h.service_id = service)
$$;

COMMENT ON FUNCTION cdviz.dora_change_failures(timestamptz, timestamptz, text, text) IS
'cdviz DORA: every deployment (service deployed or upgraded event) in [from_ts, to_ts), optionally of one environment and/or service, with failed as cdviz.dora_failed_deployments says. A deployment''s verdict does not depend on the range asked, so one call over a long range serves rates over its sub-ranges (a trailing window per day). Example: SELECT date_trunc(''day'', deployed_at), count(*) FILTER (WHERE failed), count(*) FROM cdviz.dora_change_failures(now() - interval ''30 days'', now(), ''prod'') GROUP BY 1;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_change_failures(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_change_failures(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz._dora_failure_rate_tier(failed bigint, deployments bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN deployments = 0 THEN NULL
			WHEN failed::numeric / deployments <= 0.05 THEN 'elite'
			WHEN failed::numeric / deployments <= 0.10 THEN 'high'
			WHEN failed::numeric / deployments <= 0.15 THEN 'medium'
			ELSE 'low' END;

COMMENT ON FUNCTION cdviz._dora_failure_rate_tier(bigint, bigint) IS
'cdviz: internal, for cdviz.dora_change_failure_rate and cdviz.dora_by_environment: the DORA tier of failed out of deployments: elite <= 5%, high <= 10%, medium <= 15%, else low; NULL without deployments';
REVOKE EXECUTE ON FUNCTION cdviz._dora_failure_rate_tier(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_failure_rate_tier(bigint, bigint) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_change_failure_rate(from_ts timestamptz, to_ts timestamptz,
											   environment text DEFAULT NULL,
											   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, failed bigint, deployments bigint, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- counted apart: the deployments from dora_change_failures without its
-- verdict column (an index-only scan), the failed ones from the signals
SELECT cdviz._dora_rate(f.n, t.n), f.n, t.n, t.n, cdviz._dora_failure_rate_tier(f.n, t.n)
FROM (SELECT count(*) AS n
	  FROM cdviz.dora_change_failures(from_ts, to_ts, environment, service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_failed_deployments(from_ts, to_ts, environment, service)) AS f
$$;

COMMENT ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) IS
'cdviz DORA change failure rate over [from_ts, to_ts), optionally for one environment and/or service: the share of deployments (deployed + upgraded events in the range) followed, before the next deployment of the same service in the same environment, by a service.rolledback or by an incident detected/reported on that service and environment. Returns rate (0..1), failed, deployments (= sample_size) and the tier: elite <= 5%, high <= 10%, medium <= 15%, else low. Limits: an incident without service or environment cannot be attributed and is ignored; an incident signals once at its first detected and once at its first reported event; a failure signal is looked for until the next deployment even after to_ts, so a recent deployment can still turn failed later.';
REVOKE EXECUTE ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Time to restore and failed deployment recovery time are judged on the
-- same clusters (the 2023 report's recovery times); NULL without a sample.
CREATE FUNCTION cdviz._dora_recovery_tier(median interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN median < interval '1 hour' THEN 'elite'
			WHEN median < interval '1 day' THEN 'high'
			WHEN median < interval '7 days' THEN 'medium'
			WHEN median IS NOT NULL THEN 'low' END;

COMMENT ON FUNCTION cdviz._dora_recovery_tier(interval) IS
'cdviz: internal, for cdviz.dora_time_to_restore and cdviz.dora_failed_deployment_recovery_time: the DORA tier of a median recovery time: elite < 1 hour, high < 1 day, medium < 1 week, else low; NULL for NULL';
REVOKE EXECUTE ON FUNCTION cdviz._dora_recovery_tier(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_recovery_tier(interval) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_time_to_restore(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   count(*),
	   cdviz._dora_recovery_tier(percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve))
FROM (SELECT s.environment_id, s.service_id,
			 s.resolved_at - LEAST(s.detected_at, s.reported_at) AS time_to_resolve
	  FROM cdviz.incident_summaries AS s
	  WHERE s.resolved_at >= from_ts AND s.resolved_at < to_ts) AS i
WHERE i.time_to_resolve IS NOT NULL
  AND (environment IS NULL OR i.environment_id = environment)
  AND (service IS NULL OR i.service_id = service)
$$;

COMMENT ON FUNCTION cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text) IS
'cdviz DORA time to restore service over [from_ts, to_ts), optionally for one environment and/or service: for every incident resolved in the range, resolved minus the earlier of detected and reported (see cdviz.incidents). Returns median and p90, sample_size and the tier on the median: elite < 1 hour, high < 1 day, medium < 1 week, else low. Reads cdviz.incident_summaries by resolved_at. Limit: an incident resolved without a detected/reported event is left out.';
REVOKE EXECUTE ON FUNCTION cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_time_to_restore(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Failed deployment recovery time, per failed deployment (DORA since its
-- 2023 report) where time to restore above is per incident.  The failed
-- deployments and what failed them come from cdviz.dora_failure_signals,
-- grouped per deployment; only a deployment with neither a resolution nor
-- a rollback costs one more descent of the history index (its next
-- deployment).  A deployment's recovery does not depend on the range
-- asked, so one call over a long range serves trailing windows.
CREATE FUNCTION cdviz.dora_failed_deployment_recoveries(from_ts timestamptz, to_ts timestamptz,
														environment text DEFAULT NULL,
														service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   recovered_at timestamptz, recovered_by text, recovery_time interval)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH failed AS (
	SELECT s.event_id, s.environment_id, s.service_id, s.deployed_at,
		   min(s.signal_at) FILTER (WHERE s.signal = 'rolledback') AS rolled_back_at,
		   -- recovered from its incidents once the last of them is resolved
		   CASE WHEN bool_and(s.resolved_at IS NOT NULL) FILTER (WHERE s.incident_id IS NOT NULL)
				THEN max(s.resolved_at) FILTER (WHERE s.incident_id IS NOT NULL) END AS resolved_at
	FROM cdviz.dora_failure_signals(from_ts, to_ts, environment, service) AS s
	GROUP BY s.event_id, s.environment_id, s.service_id, s.deployed_at
), recovery AS (
	SELECT f.event_id, f.environment_id, f.service_id, f.deployed_at,
		   CASE WHEN f.rolled_back_at <= f.resolved_at OR f.resolved_at IS NULL THEN f.rolled_back_at
				ELSE f.resolved_at END AS rolled_back_or_resolved_at,
		   CASE WHEN f.rolled_back_at <= f.resolved_at
					 OR (f.rolled_back_at IS NOT NULL AND f.resolved_at IS NULL) THEN 'rollback'
				WHEN f.resolved_at IS NOT NULL THEN 'incident resolved' END AS recovered_by,
		   n.valid_from AS next_deployed_at
	FROM failed AS f
	LEFT JOIN LATERAL (
		SELECT h.valid_from
		FROM cdviz.environment_history AS h
		WHERE f.resolved_at IS NULL AND f.rolled_back_at IS NULL
		  AND h.environment_id = f.environment_id AND h.service_id = f.service_id
		  AND (h.valid_from, h.event_id) > (f.deployed_at, f.event_id)
		  AND h.predicate IN ('deployed', 'upgraded')
		ORDER BY h.valid_from, h.event_id
		LIMIT 1) AS n ON true
)
SELECT r.event_id, r.environment_id, r.service_id, r.deployed_at,
	   coalesce(r.rolled_back_or_resolved_at, r.next_deployed_at),
	   coalesce(r.recovered_by, CASE WHEN r.next_deployed_at IS NOT NULL THEN 'next deployment' END),
	   coalesce(r.rolled_back_or_resolved_at, r.next_deployed_at) - r.deployed_at
FROM recovery AS r
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployment_recoveries(timestamptz, timestamptz, text, text) IS
'cdviz DORA: every deployment in [from_ts, to_ts) (optionally of one environment and/or service) that cdviz.dora_failed_deployments counts as failed, one row each, with its recovery: recovered_at and recovered_by = rollback (the first service.rolledback charged to it), incident resolved (the latest resolved time of the incidents charged to it, once all of them are resolved), whichever came first, else next deployment (its service''s next deployed/upgraded event in that environment); NULL while not recovered. recovery_time = recovered_at - deployed_at. A deployment''s recovery does not depend on the range asked. What cdviz.dora_failed_deployment_recovery_time aggregates. Example: SELECT service_id, deployed_at, recovered_by, recovery_time FROM cdviz.dora_failed_deployment_recoveries(now() - interval ''30 days'', now(), ''prod'') ORDER BY recovery_time DESC NULLS FIRST;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recoveries(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recoveries(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- The aggregate of the recovery times, apart so that
-- cdviz.dora_by_environment applies it to each environment's recoveries,
-- listed once for all environments.
CREATE FUNCTION cdviz._dora_recovery_time(recovery_times interval[])
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY r.recovery_time),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY r.recovery_time),
	   count(*),
	   cdviz._dora_recovery_tier(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.recovery_time))
FROM unnest(recovery_times) AS r(recovery_time)
WHERE r.recovery_time >= interval '0'
$$;

COMMENT ON FUNCTION cdviz._dora_recovery_time(interval[]) IS
'cdviz: internal, for cdviz.dora_failed_deployment_recovery_time and cdviz.dora_by_environment: median, p90, sample_size and tier of the recovery times that are not negative (NULL elements and a NULL array count as none)';
REVOKE EXECUTE ON FUNCTION cdviz._dora_recovery_time(interval[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_recovery_time(interval[]) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_failed_deployment_recovery_time(from_ts timestamptz, to_ts timestamptz,
														   environment text DEFAULT NULL,
														   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT t.*
FROM (SELECT array_agg(r.recovery_time) AS recovery_times
	  FROM cdviz.dora_failed_deployment_recoveries(from_ts, to_ts, environment, service) AS r) AS r
CROSS JOIN LATERAL cdviz._dora_recovery_time(r.recovery_times) AS t
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployment_recovery_time(timestamptz, timestamptz, text, text) IS
'cdviz DORA failed deployment recovery time over [from_ts, to_ts), optionally for one environment and/or service: for every deployment in the range that cdviz.dora_failed_deployments counts as failed, the time from the deployment to its recovery (cdviz.dora_failed_deployment_recoveries): the resolution of the incidents charged to it (the latest resolved time, once all of them are resolved) or the rollback charged to it, whichever came first; with neither, the next deployed/upgraded event of that service in that environment. Returns median and p90 (percentile_cont), sample_size and the tier on the median: elite < 1 hour, high < 1 day, medium < 1 week, else low. Limits: a failed deployment not yet recovered (an open incident, no rollback, no later deployment) is not in the sample; a recovery before the deployment (an incident resolved before it was reported) is left out. Example: SELECT * FROM cdviz.dora_failed_deployment_recovery_time(now() - interval ''30 days'', now(), ''prod'');';
REVOKE EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recovery_time(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_failed_deployment_recovery_time(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- Rework rate (DORA's fifth metric, 2024 report): the share of deployments
-- that were unplanned, made because of an incident in production.  Which
-- deployments were rework is found from the rare side: rollbacks (their
-- partial index), incidents open at the time (incident_summaries by
-- last_event_at), and incidents and bug tickets that a deployment's
-- artifact or change is linked to (cdviz.rework_links of the look-back
-- window, kept at ingest); the deployments themselves are only counted.
-- The rules of cdviz.dora_rework_rules are the exception: they are tested
-- against every deployment of the range, and only when the table has a
-- row.
--
-- Incidents and tickets are looked for at most 90 days before the
-- deployment (the look-back), so that the cost of a range does not grow
-- with the history before it; the bound is per deployment, so a
-- deployment's verdict does not depend on the range asked.
CREATE TABLE cdviz.dora_rework_rules (
	rule_name		text PRIMARY KEY,
	field			text NOT NULL
		CHECK (field IN ('environment_id', 'service_id', 'artifact_id', 'change_id', 'change_description')),
	pattern			text NOT NULL
		-- compiling the expression here rejects an invalid one when it is
		-- stored (SQLSTATE 2201B), not in every later call
		CHECK (pattern <> '' AND ('' ~ pattern) IS NOT NULL),
	rework			boolean NOT NULL DEFAULT true
);

COMMENT ON TABLE cdviz.dora_rework_rules IS
'cdviz DORA: the site''s own rework classification, read by cdviz.dora_rework: a deployment whose field (environment_id, service_id, artifact_id, change_id of its artifact, change_description = the latest description of that change) matches pattern (a POSIX regular expression, case-sensitive: prefix (?i) for case-insensitive) is rework when rework is true, and is not rework, whatever else says it is, when rework is false. Readers may read it; only the extension''s owner (or a role it grants INSERT/UPDATE/DELETE) may change it. Example: INSERT INTO cdviz.dora_rework_rules VALUES (''hotfix changes'', ''change_description'', ''(?i)^hotfix'');';
COMMENT ON COLUMN cdviz.dora_rework_rules.rule_name IS 'a name for the rule; cdviz.dora_rework reports it as the reason "rule: <name>"';
COMMENT ON COLUMN cdviz.dora_rework_rules.field IS 'what the pattern is matched against: environment_id, service_id, artifact_id, change_id or change_description';
COMMENT ON COLUMN cdviz.dora_rework_rules.pattern IS 'POSIX regular expression (the ~ operator)';
COMMENT ON COLUMN cdviz.dora_rework_rules.rework IS 'true: a matching deployment is rework; false: a matching deployment is never rework (the rule wins over every other reason)';
GRANT SELECT ON cdviz.dora_rework_rules TO cdviz_reader;
SELECT pg_catalog.pg_extension_config_dump('cdviz.dora_rework_rules', '');

-- The site's rules are tested against every deployment of the range, and
-- only while the table has a row.  Inlined, their estimate (the rules
-- crossed with every deployment of the range, whether the table is empty
-- or not) made the planner compile the whole rework query with JIT:
-- seconds for a query of milliseconds.  As a function of their own they
-- are planned apart, with the row estimate below.
CREATE FUNCTION cdviz._dora_rework_by_rules(from_ts timestamptz, to_ts timestamptz,
											environment text, service text)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   action text, reason text)
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM cdviz.dora_rework_rules) THEN
		RETURN;
	END IF;
	RETURN QUERY
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate,
		   CASE WHEN r.rework THEN 'rule: ' ELSE 'not rework, rule: ' END || r.rule_name
	FROM cdviz.environment_history AS h
	LEFT JOIN cdviz.artifact_changes AS a ON a.artifact_id = h.artifact_id
	CROSS JOIN cdviz.dora_rework_rules AS r
	WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
	  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	  AND CASE r.field
			  WHEN 'environment_id' THEN h.environment_id
			  WHEN 'service_id' THEN h.service_id
			  WHEN 'artifact_id' THEN h.artifact_id
			  WHEN 'change_id' THEN a.change_id
			  WHEN 'change_description' THEN (SELECT c.description FROM cdviz.change_summaries AS c
											  WHERE c.change_id = a.change_id)
		  END ~ r.pattern;
END
$$;

COMMENT ON FUNCTION cdviz._dora_rework_by_rules(timestamptz, timestamptz, text, text) IS
'cdviz: internal, for cdviz.dora_rework: the deployments of the range that a row of cdviz.dora_rework_rules matches, with the reason "rule: <name>" (rework) or "not rework, rule: <name>"; nothing, at once, while the table is empty';
REVOKE EXECUTE ON FUNCTION cdviz._dora_rework_by_rules(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz._dora_rework_by_rules(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_rework(from_ts timestamptz, to_ts timestamptz,
								  environment text DEFAULT NULL,
								  service text DEFAULT NULL)
RETURNS TABLE (event_id bigint, environment_id text, service_id text, deployed_at timestamptz,
			   action text, reasons text[])
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH reasons AS (
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, 'rollback' AS reason
	FROM cdviz.environment_history AS h
	WHERE h.valid_from >= from_ts AND h.valid_from < to_ts AND h.predicate = 'rolledback'
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	-- an incident is open from its first detected or reported event to its
	-- (latest) resolved event: the deployments of its service and
	-- environment meanwhile, one range of the (environment, service,
	-- valid_from) index per incident
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, 'open incident'
	FROM cdviz.incident_summaries AS i
	CROSS JOIN LATERAL (
		SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate
		FROM cdviz.environment_history AS h
		WHERE h.environment_id = i.environment_id AND h.service_id = i.service_id
		  AND h.valid_from >= GREATEST(LEAST(i.detected_at, i.reported_at), from_ts)
		  AND h.valid_from < LEAST(i.resolved_at, to_ts)
		  AND h.valid_from <= LEAST(i.detected_at, i.reported_at) + interval '90 days'
		  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		-- kept a subquery: a join would be planned over every deployment of
		-- the range, sorted or hashed, where the incidents are few
		OFFSET 0) AS h
	WHERE i.last_event_at >= from_ts - interval '90 days'
	  AND LEAST(i.detected_at, i.reported_at) < to_ts
	  AND i.environment_id IS NOT NULL AND i.service_id IS NOT NULL
	  AND (environment IS NULL OR i.environment_id = environment)
	  AND (service IS NULL OR i.service_id = service)
	UNION ALL
	-- deployments linked to a cause of the look-back, or shipping an
	-- artifact linked to one or built from a change linked to one
	-- (cdviz.rework_links, kept at ingest)
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, k.reason
	FROM cdviz.rework_links AS k
	JOIN cdviz.environment_history AS h ON h.event_id = k.event_id
	WHERE k.since >= from_ts - interval '90 days' AND k.since < to_ts AND k.subject = 'service'
	  AND h.valid_from >= from_ts AND h.valid_from < to_ts
	  AND h.valid_from >= k.since AND h.valid_from <= k.since + interval '90 days'
	  AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT h.event_id, h.environment_id, h.service_id, h.valid_from, h.predicate, k.reason
	FROM (SELECT k.subject_id AS artifact_id, k.since, k.reason
		  FROM cdviz.rework_links AS k
		  WHERE k.since >= from_ts - interval '90 days' AND k.since < to_ts AND k.subject = 'artifact'
		  UNION ALL
		  SELECT a.artifact_id, k.since, k.reason
		  FROM cdviz.rework_links AS k
		  JOIN cdviz.artifact_changes AS a ON a.change_id = k.subject_id
		  WHERE k.since >= from_ts - interval '90 days' AND k.since < to_ts AND k.subject = 'change') AS k
	JOIN cdviz.environment_history AS h
	  ON h.artifact_id = k.artifact_id
	 AND h.valid_from >= from_ts AND h.valid_from < to_ts
	 AND h.valid_from >= k.since AND h.valid_from <= k.since + interval '90 days'
	WHERE h.predicate IN ('deployed', 'upgraded', 'rolledback')
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT * FROM cdviz._dora_rework_by_rules(from_ts, to_ts, environment, service)
)
SELECT r.event_id, r.environment_id, r.service_id, r.valid_from, r.predicate,
	   array_agg(DISTINCT r.reason ORDER BY r.reason)
FROM reasons AS r
GROUP BY r.event_id, r.environment_id, r.service_id, r.valid_from, r.predicate
HAVING NOT bool_or(r.reason LIKE 'not rework, %')
$$;

COMMENT ON FUNCTION cdviz.dora_rework(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the deployments (service deployed, upgraded or rolledback events) in [from_ts, to_ts), optionally of one environment and/or service, that were rework, one row each with its reasons: rollback (a rolledback event); open incident (made to that service and environment while an incident naming both was open: first detected or reported at or before the deployment and at most 90 days before it, not yet resolved); link to incident / link to ticket (the deployment event, its artifact''s events or its artifact''s change''s events name in context.links an incident event, or a ticket event whose ticketType contains "bug", of the 90 days before the deployment (cdviz.rework_links)); chain of incident / chain of ticket (its artifact was packaged, or its change created, in the chain of such an incident or ticket after it); rule: <name> (cdviz.dora_rework_rules). A rule with rework = false takes the deployment out. What cdviz.dora_rework_rate counts; a deployment''s verdict does not depend on the range asked. Example: SELECT * FROM cdviz.dora_rework(now() - interval ''30 days'', now(), ''prod'') ORDER BY deployed_at;';
REVOKE EXECUTE ON FUNCTION cdviz.dora_rework(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_rework(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_rework_rate(from_ts timestamptz, to_ts timestamptz,
									   environment text DEFAULT NULL,
									   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, rework bigint, deployments bigint, sample_size bigint)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT cdviz._dora_rate(r.n, t.n), r.n, t.n, t.n
FROM (SELECT count(*) AS n
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
		AND h.predicate IN ('deployed', 'upgraded', 'rolledback')
		AND (environment IS NULL OR h.environment_id = environment)
		AND (service IS NULL OR h.service_id = service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_rework(from_ts, to_ts, environment, service)) AS r
$$;

COMMENT ON FUNCTION cdviz.dora_rework_rate(timestamptz, timestamptz, text, text) IS
'cdviz DORA rework rate over [from_ts, to_ts), optionally for one environment and/or service: the share of deployments (service deployed, upgraded and rolledback events) that were rework as cdviz.dora_rework says (rollbacks, deployments made while an incident on that service and environment was open, deployments whose artifact or change is linked by context.links or chainId to an incident or a bug ticket, and the site''s cdviz.dora_rework_rules). Returns rate (0..1), rework, deployments (= sample_size). No tier: DORA''s 2024 report introduced the metric without performance clusters. Example: SELECT * FROM cdviz.dora_rework_rate(now() - interval ''30 days'', now(), ''prod'');';
REVOKE EXECUTE ON FUNCTION cdviz.dora_rework_rate(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_rework_rate(timestamptz, timestamptz, text, text) TO cdviz_reader;

-- The metrics for every environment, one row each: what a "DORA per
-- environment" table shows, in one statement.  The
-- deployment frequency, lead time and time to restore are the functions
-- above called per environment: their environment filter stays an index
-- condition on the (environment_id, time) indexes, so each call reads the
-- window of its environment only.  What costs the same for one environment
-- as for all is listed once for all of them and counted per environment:
-- the failed deployments with their recoveries (the change failure rate's
-- failed deployments and the recovery time's sample; the failure signals
-- are found once), and the rework (its causes and their links).  The
-- change failure rate's deployments are the deployment frequency's (the
-- same deployed and upgraded events), and the rework rate's are those
-- plus the rollbacks (their partial index).
--
-- Without JIT: the statement's estimated cost grows with the range and
-- passes jit_above_cost at a few months, and compiling its many
-- expressions then takes longer than running it (a tenth of a second at
-- 90 days, over a second at a year).
CREATE FUNCTION cdviz.dora_by_environment(from_ts timestamptz, to_ts timestamptz,
										  service text DEFAULT NULL)
RETURNS TABLE (environment_id text, deployments bigint, per_day_per_service numeric,
			   frequency_tier text, lead_time_median interval, lead_time_p90 interval,
			   lead_time_tier text, change_failure_rate numeric, failed_deployments bigint,
			   failure_rate_tier text, time_to_restore_median interval, incidents bigint,
			   restore_tier text, recovery_time_median interval, recovery_tier text,
			   rework_rate numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
	RETURN QUERY
	WITH failed AS (
		SELECT r.environment_id, count(*) AS n, array_agg(r.recovery_time) AS recovery_times
		FROM cdviz.dora_failed_deployment_recoveries(from_ts, to_ts, NULL, service) AS r
		GROUP BY r.environment_id
	), rework AS (
		SELECT r.environment_id, count(*) AS n
		FROM cdviz.dora_rework(from_ts, to_ts, NULL, service) AS r
		GROUP BY r.environment_id
	), rollbacks AS (
		SELECT h.environment_id, count(*) AS n
		FROM cdviz.environment_history AS h
		WHERE h.valid_from >= from_ts AND h.valid_from < to_ts AND h.predicate = 'rolledback'
		  AND (service IS NULL OR h.service_id = service)
		GROUP BY h.environment_id
	)
	SELECT e.environment_id, df.deployments, df.per_day_per_service, df.tier,
		   lt.median, lt.p90, lt.tier,
		   cdviz._dora_rate(coalesce(f.n, 0), coalesce(df.deployments, 0)), coalesce(f.n, 0),
		   cdviz._dora_failure_rate_tier(coalesce(f.n, 0), coalesce(df.deployments, 0)),
		   ttr.median, ttr.sample_size, ttr.tier, fdrt.median, fdrt.tier,
		   cdviz._dora_rate(coalesce(rw.n, 0), coalesce(df.deployments, 0) + coalesce(rb.n, 0))
	FROM (SELECT DISTINCT i.environment_id FROM cdviz.environment_inventory AS i) AS e
	LEFT JOIN LATERAL cdviz.dora_deployment_frequency(from_ts, to_ts, e.environment_id, service) AS df ON true
	CROSS JOIN LATERAL cdviz.dora_lead_time(from_ts, to_ts, e.environment_id, service) AS lt
	CROSS JOIN LATERAL cdviz.dora_time_to_restore(from_ts, to_ts, e.environment_id, service) AS ttr
	LEFT JOIN failed AS f ON f.environment_id = e.environment_id
	CROSS JOIN LATERAL cdviz._dora_recovery_time(f.recovery_times) AS fdrt
	LEFT JOIN rework AS rw ON rw.environment_id = e.environment_id
	LEFT JOIN rollbacks AS rb ON rb.environment_id = e.environment_id
	ORDER BY e.environment_id;
END
$$;

COMMENT ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) IS
'cdviz DORA: the five metrics over [from_ts, to_ts) for every environment where a service runs (cdviz.environment_inventory), optionally for one service; one row per environment with the values and tiers of cdviz.dora_deployment_frequency, dora_lead_time, dora_change_failure_rate, dora_time_to_restore, dora_failed_deployment_recovery_time (recovery_time_median, recovery_tier) and dora_rework_rate (rework_rate) for that environment (same definitions). Example: SELECT environment_id, per_day_per_service, frequency_tier, lead_time_median, change_failure_rate, recovery_time_median, rework_rate FROM cdviz.dora_by_environment(now() - interval ''30 days'', now());';
REVOKE EXECUTE ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) TO cdviz_reader;
