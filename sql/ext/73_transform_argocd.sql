-- Argo CD notifications -> CDEvents 0.5.1.
--
-- Argo CD has no fixed webhook body; the user writes a template.  This
-- transformer reads the one the peer project documents, so its users keep
-- their Argo CD configuration:
--
--   {"timestamp": "{{.time}}", "context": {{toJson .context}}, "app": {{toJson .app}}}
--
-- i.e. the whole Application resource.  The body does not say which trigger
-- fired, so the state of the application decides, and the inventory tells
-- a deployment from a health recovery of what already runs.

CREATE FUNCTION cdviz.argocd_environment(app jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT coalesce(
		nullif(app #>> '{metadata,annotations,cdviz.dev/environment}', ''),
		coalesce(nullif(app #>> '{spec,destination,name}', ''),
				 regexp_replace(regexp_replace(coalesce(app #>> '{spec,destination,server}', 'in-cluster'),
											   '^[a-z]+://', ''), '/+$', ''))
		|| '/' || coalesce(nullif(app #>> '{spec,destination,namespace}', ''), 'default'))
$$;
COMMENT ON FUNCTION cdviz.argocd_environment(jsonb) IS
'cdviz: environment id of an Argo CD Application: its annotation cdviz.dev/environment, else <destination name or server host>/<destination namespace>';

CREATE FUNCTION cdviz.argocd_revision_purl(app jsonb, revision text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	-- without images, the artifact is the configuration at its revision
	SELECT CASE
		WHEN repo ~ '^https://github\.com/[^/]+/[^/]+$'
			THEN 'pkg:github/' || lower(regexp_replace(repo, '^https://github\.com/', '')) || '@' || revision
		ELSE 'pkg:generic/' || lower(app #>> '{metadata,name}') || '@' || revision
			 || '?vcs_url=' || replace(replace(repo, ':', '%3A'), '@', '%40')
	END
	FROM (SELECT regexp_replace(coalesce(app #>> '{spec,source,repoURL}', app #>> '{spec,sources,0,repoURL}', ''),
								'(\.git)?/*$', '') AS repo) r
$$;
COMMENT ON FUNCTION cdviz.argocd_revision_purl(jsonb, text) IS
'cdviz: package URL of an Argo CD Application''s source at a revision: pkg:github/<owner>/<repo>@<rev> for GitHub sources, else pkg:generic/<app>@<rev>?vcs_url=<repoURL>';

CREATE FUNCTION cdviz.transform_argocd(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	app jsonb := body -> 'app';
	name text := body #>> '{app,metadata,name}';
	ns text := coalesce(body #>> '{app,metadata,namespace}', 'argocd');
	src text := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'argocd') || '/' || ns || '/' || name;
	env text := cdviz.argocd_environment(body -> 'app');
	env_ref jsonb := jsonb_build_object('id', env, 'source', src);
	phase text := body #>> '{app,status,operationState,phase}';
	health text := body #>> '{app,status,health,status}';
	revision text := coalesce(body #>> '{app,status,operationState,syncResult,revision}',
							  body #>> '{app,status,sync,revision}');
	ts text := coalesce(body ->> 'timestamp', body #>> '{app,status,reconciledAt}');
	deploy_ts text;
	images text[];
	svc text;
	artifact text;
	n integer := 0;
	inc record;
BEGIN
	IF jsonb_typeof(app) <> 'object' OR name IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', 'not an Argo CD notification: no "app" object with metadata.name');
		RETURN;
	END IF;
	SELECT array_agg(i ORDER BY i) INTO images
	FROM jsonb_array_elements_text(coalesce(app #> '{status,summary,images}', '[]')) AS i;

	-- one service per image when there are several, else the application
	FOR svc, artifact IN
		SELECT CASE WHEN cardinality(images) > 1 THEN name || '/' || regexp_replace(split_part(split_part(i, '@', 1), ':', 1), '^.*/', '')
					ELSE name END,
			   cdviz.webhook_oci_purl(i)
		FROM unnest(images) AS i
		UNION ALL
		SELECT name, cdviz.argocd_revision_purl(app, revision)
		WHERE coalesce(cardinality(images), 0) = 0
	LOOP
		IF app #>> '{metadata,deletionTimestamp}' IS NOT NULL THEN
			RETURN NEXT cdviz.webhook_cdevent('service.removed', src, app #>> '{metadata,deletionTimestamp}', svc,
				jsonb_build_object('environment', env_ref));
			n := n + 1;
		ELSIF phase IN ('Failed', 'Error') OR health = 'Degraded' THEN
			-- one incident per application and revision: a failed sync and
			-- the degraded health that follows are the same problem
			IF svc = name OR n = 0 THEN
				RETURN NEXT cdviz.webhook_cdevent('incident.detected', src, ts,
					coalesce(body #>> '{context,argocdUrl}', '') || '/applications/' || ns || '/' || name
						|| '/incidents/' || coalesce(revision, 'unknown'),
					jsonb_build_object(
						'description', CASE WHEN phase IN ('Failed', 'Error')
											THEN format('sync %s: %s', lower(phase), app #>> '{status,operationState,message}')
											ELSE format('health degraded: %s', coalesce(app #>> '{status,health,message}', 'no message')) END,
						'environment', env_ref,
						'service', jsonb_build_object('id', name, 'source', src),
						'artifactId', artifact));
				n := n + 1;
			END IF;
		ELSIF phase = 'Succeeded' AND health = 'Healthy' AND artifact IS NOT NULL THEN
			-- a notification about what already runs is no deployment
			IF NOT EXISTS (SELECT FROM cdviz.environment_state s
						   WHERE s.environment_id = env AND s.service_id = svc AND s.artifact_id = artifact) THEN
				deploy_ts := coalesce(app #>> '{status,operationState,finishedAt}', ts);
				RETURN NEXT cdviz.webhook_cdevent(
					'service.' || cdviz.webhook_deploy_predicate(env, svc, deploy_ts::timestamptz), src, deploy_ts, svc,
					jsonb_build_object('environment', env_ref, 'artifactId', artifact));
				n := n + 1;
			END IF;
		END IF;
	END LOOP;

	-- healthy again: resolve what is still open for the application there
	IF health = 'Healthy' AND coalesce(phase, 'Succeeded') = 'Succeeded'
	   AND app #>> '{metadata,deletionTimestamp}' IS NULL THEN
		FOR inc IN
			SELECT DISTINCT l.subject_id
			FROM cdviz.cdevents_lake l
			WHERE l.subject = 'incident' AND l.predicate IN ('detected', 'reported')
			  AND l.payload #>> '{subject,content,environment,id}' = env
			  AND l.payload #>> '{subject,content,service,id}' = name
			  AND l."timestamp" <= ts::timestamptz
			  AND NOT EXISTS (SELECT FROM cdviz.cdevents_lake r
							  WHERE r.subject = 'incident' AND r.subject_id = l.subject_id
								AND r.predicate = 'resolved')
		LOOP
			RETURN NEXT cdviz.webhook_cdevent('incident.resolved', src, ts, inc.subject_id,
				jsonb_build_object('description', 'application healthy again',
								   'environment', env_ref,
								   'service', jsonb_build_object('id', name, 'source', src)));
			n := n + 1;
		END LOOP;
	END IF;

	IF n = 0 THEN
		RETURN NEXT jsonb_build_object('ignored',
			CASE WHEN phase = 'Succeeded' AND health = 'Healthy'
				 THEN format('%s already runs revision %s in %s', name, coalesce(revision, '?'), env)
				 ELSE format('application %s: sync %s, health %s', name, coalesce(phase, 'none'), coalesce(health, 'unknown')) END);
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.transform_argocd(jsonb, jsonb) IS
'cdviz: Argo CD notifications transformer (template {"timestamp": ..., "context": {{toJson .context}}, "app": {{toJson .app}}}): sync succeeded and healthy -> service.deployed (first in that environment) or service.upgraded, one per image of status.summary.images (pkg:oci), else the source revision; sync failed or health degraded -> incident.detected; healthy again -> incident.resolved; deletionTimestamp -> service.removed. The environment is <cluster>/<namespace> unless the annotation cdviz.dev/environment names it.';

REVOKE EXECUTE ON FUNCTION cdviz.transform_argocd(jsonb, jsonb) FROM PUBLIC;
