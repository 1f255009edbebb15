-- Read API, part 5: the four DORA metrics.
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
	('time_to_restore', 'low', 'median of 1 week or more');

COMMENT ON VIEW cdviz.dora_thresholds IS
'cdviz: the DORA tier thresholds the cdviz.dora_* functions apply (after the 2023 Accelerate State of DevOps report clusters); boundaries belong to the better tier';
GRANT SELECT ON cdviz.dora_thresholds TO cdviz_reader;

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
FROM (SELECT count(*) AS n,
			 count(DISTINCT h.service_id) AS nsvc,
			 count(DISTINCT (h.valid_from AT TIME ZONE 'UTC')::date) AS ndays,
			 extract(epoch FROM to_ts - from_ts) / 86400 AS days
	  FROM cdviz.environment_history AS h
	  WHERE h.valid_from >= from_ts AND h.valid_from < to_ts
		AND h.predicate IN ('deployed', 'upgraded')
		AND (environment IS NULL OR h.environment_id = environment)
		AND (service IS NULL OR h.service_id = service)) AS d
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
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0'),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0'),
	   count(*) FILTER (WHERE s.lead_time >= interval '0'),
	   count(*) FILTER (WHERE s.lead_time IS NULL OR s.lead_time < interval '0'),
	   CASE WHEN count(*) FILTER (WHERE s.lead_time >= interval '0') = 0 THEN NULL
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0') < interval '1 day' THEN 'elite'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0') < interval '7 days' THEN 'high'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY s.lead_time) FILTER (WHERE s.lead_time >= interval '0') < interval '30 days' THEN 'medium'
			ELSE 'low' END
FROM (SELECT f.deployed_at - f.changed_at AS lead_time
	  FROM cdviz.first_deployments AS f
	  WHERE f.deployed_at >= from_ts AND f.deployed_at < to_ts
		AND (environment IS NULL OR f.environment_id = environment)
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
CREATE FUNCTION cdviz.dora_failed_deployments(from_ts timestamptz, to_ts timestamptz,
											  environment text DEFAULT NULL,
											  service text DEFAULT NULL)
RETURNS TABLE (event_id bigint)
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
	SELECT h.environment_id, h.service_id, h.valid_from AS ts
	FROM cdviz.environment_history AS h
	WHERE h.valid_from >= from_ts AND h.predicate = 'rolledback'
	  AND h.valid_from <= (SELECT ts FROM horizon)
	  AND (environment IS NULL OR h.environment_id = environment)
	  AND (service IS NULL OR h.service_id = service)
	UNION ALL
	SELECT i.environment_id, i.service_id, x.ts
	FROM cdviz.incident_summaries AS i
	CROSS JOIN LATERAL (VALUES (i.detected_at), (i.reported_at)) AS x(ts)
	WHERE i.last_event_at >= from_ts AND x.ts >= from_ts
	  AND x.ts <= (SELECT ts FROM horizon)
	  AND i.service_id IS NOT NULL AND i.environment_id IS NOT NULL
	  AND (environment IS NULL OR i.environment_id = environment)
	  AND (service IS NULL OR i.service_id = service)
), failed AS (
	SELECT DISTINCT d.event_id
	FROM signals AS s
	CROSS JOIN LATERAL (
		SELECT h.event_id, h.valid_from
		FROM cdviz.environment_history AS h
		WHERE h.environment_id = s.environment_id AND h.service_id = s.service_id
		  AND h.valid_from <= s.ts AND h.predicate IN ('deployed', 'upgraded')
		ORDER BY h.valid_from DESC, h.event_id DESC
		LIMIT 1) AS d
	WHERE d.valid_from >= from_ts AND d.valid_from < to_ts
)
SELECT f.event_id FROM failed AS f
$$;

COMMENT ON FUNCTION cdviz.dora_failed_deployments(timestamptz, timestamptz, text, text) IS
'cdviz DORA: the environment_history event ids of the deployments in [from_ts, to_ts) (optionally of one environment and/or service) that failed: a service.rolledback or an incident detected/reported on that service and environment followed them before the next deployment there. What cdviz.dora_change_failure_rate and cdviz.dora_change_failures count. Example: SELECT count(*) FROM cdviz.dora_failed_deployments(now() - interval ''30 days'', now(), ''prod'');';
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

CREATE FUNCTION cdviz.dora_change_failure_rate(from_ts timestamptz, to_ts timestamptz,
											   environment text DEFAULT NULL,
											   service text DEFAULT NULL)
RETURNS TABLE (rate numeric, failed bigint, deployments bigint, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
-- counted apart: the deployments from dora_change_failures without its
-- verdict column (an index-only scan), the failed ones from the signals
SELECT round(f.n::numeric / nullif(t.n, 0), 4), f.n, t.n, t.n,
	   CASE WHEN t.n = 0 THEN NULL
			WHEN f.n::numeric / t.n <= 0.05 THEN 'elite'
			WHEN f.n::numeric / t.n <= 0.10 THEN 'high'
			WHEN f.n::numeric / t.n <= 0.15 THEN 'medium'
			ELSE 'low' END
FROM (SELECT count(*) AS n
	  FROM cdviz.dora_change_failures(from_ts, to_ts, environment, service)) AS t,
	 (SELECT count(*) AS n
	  FROM cdviz.dora_failed_deployments(from_ts, to_ts, environment, service)) AS f
$$;

COMMENT ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) IS
'cdviz DORA change failure rate over [from_ts, to_ts), optionally for one environment and/or service: the share of deployments (deployed + upgraded events in the range) followed, before the next deployment of the same service in the same environment, by a service.rolledback or by an incident detected/reported on that service and environment. Returns rate (0..1), failed, deployments (= sample_size) and the tier: elite <= 5%, high <= 10%, medium <= 15%, else low. Limits: an incident without service or environment cannot be attributed and is ignored; an incident signals once at its first detected and once at its first reported event; a failure signal is looked for until the next deployment even after to_ts, so a recent deployment can still turn failed later.';
REVOKE EXECUTE ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_change_failure_rate(timestamptz, timestamptz, text, text) TO cdviz_reader;

CREATE FUNCTION cdviz.dora_time_to_restore(from_ts timestamptz, to_ts timestamptz,
										   environment text DEFAULT NULL,
										   service text DEFAULT NULL)
RETURNS TABLE (median interval, p90 interval, sample_size bigint, tier text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   percentile_cont(0.9) WITHIN GROUP (ORDER BY i.time_to_resolve),
	   count(*),
	   CASE WHEN count(*) = 0 THEN NULL
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve) < interval '1 hour' THEN 'elite'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve) < interval '1 day' THEN 'high'
			WHEN percentile_cont(0.5) WITHIN GROUP (ORDER BY i.time_to_resolve) < interval '7 days' THEN 'medium'
			ELSE 'low' END
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

-- The four metrics for every environment, one row each: what a "DORA per
-- environment" table shows.  Calling the functions above laterally, once
-- per environment, passes the environment as a parameter, which the
-- planner cannot fold into the (environment_id, time) index ranges: every
-- call then reads the window of every environment.  Here each environment
-- gets its own statement with the id as a literal, planned for it.
CREATE FUNCTION cdviz.dora_by_environment(from_ts timestamptz, to_ts timestamptz,
										  service text DEFAULT NULL)
RETURNS TABLE (environment_id text, deployments bigint, per_day_per_service numeric,
			   frequency_tier text, lead_time_median interval, lead_time_p90 interval,
			   lead_time_tier text, change_failure_rate numeric, failed_deployments bigint,
			   failure_rate_tier text, time_to_restore_median interval, incidents bigint,
			   restore_tier text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	env text;
BEGIN
	FOR env IN
		SELECT DISTINCT i.environment_id FROM cdviz.environment_inventory AS i ORDER BY 1
	LOOP
		RETURN QUERY EXECUTE format(
			'SELECT %1$L::text, df.deployments, df.per_day_per_service, df.tier,'
			' lt.median, lt.p90, lt.tier, cfr.rate, cfr.failed, cfr.tier,'
			' ttr.median, ttr.sample_size, ttr.tier'
			' FROM cdviz.dora_deployment_frequency($1, $2, %1$L, $3) AS df'
			' FULL JOIN cdviz.dora_lead_time($1, $2, %1$L, $3) AS lt ON true'
			' FULL JOIN cdviz.dora_change_failure_rate($1, $2, %1$L, $3) AS cfr ON true'
			' FULL JOIN cdviz.dora_time_to_restore($1, $2, %1$L, $3) AS ttr ON true', env)
			USING from_ts, to_ts, service;
	END LOOP;
END
$$;

COMMENT ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) IS
'cdviz DORA: the four metrics over [from_ts, to_ts) for every environment where a service runs (cdviz.environment_inventory), optionally for one service; one row per environment with the values and tiers of cdviz.dora_deployment_frequency, dora_lead_time, dora_change_failure_rate and dora_time_to_restore for that environment (same definitions). Example: SELECT environment_id, per_day_per_service, frequency_tier, lead_time_median, change_failure_rate, time_to_restore_median FROM cdviz.dora_by_environment(now() - interval ''30 days'', now());';
REVOKE EXECUTE ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdviz.dora_by_environment(timestamptz, timestamptz, text) TO cdviz_reader;
