-- GitLab webhooks -> CDEvents 0.5.1.  GitLab names the event in the
-- X-Gitlab-Event header ("Pipeline Hook", ...) and in the body's
-- object_kind; the body is read by object_kind so that a system hook
-- (header "System Hook") is understood as well.

CREATE FUNCTION cdviz.gitlab_outcome(status text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE status
		WHEN 'success' THEN 'success'
		WHEN 'failed' THEN 'failure'
		WHEN 'canceled' THEN 'cancel'
		WHEN 'cancelled' THEN 'cancel'
		WHEN 'skipped' THEN 'cancel'
		ELSE 'error'
	END
$$;
COMMENT ON FUNCTION cdviz.gitlab_outcome(text) IS
'cdviz: CDEvents outcome of a GitLab pipeline or job status: success, failed -> failure, canceled|skipped -> cancel, anything else -> error';

-- pkg:gitlab/<namespace>/<name>@<version> of a project path (nested groups
-- are namespace segments)
CREATE FUNCTION cdviz.gitlab_purl(project_path text, version text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT 'pkg:gitlab/' || lower(project_path) || '@' || version
$$;
COMMENT ON FUNCTION cdviz.gitlab_purl(text, text) IS
'cdviz: package URL of a GitLab project at a version (tag or commit): pkg:gitlab/<group>/<project>@<version>';

CREATE FUNCTION cdviz.transform_gitlab(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind text := body ->> 'object_kind';
	project text := coalesce(body #>> '{project,path_with_namespace}',
							 regexp_replace(body #>> '{repository,homepage}', '^[a-z]+://[^/]+/', ''),
							 body ->> 'project_name');
	web_url text := coalesce(body #>> '{project,web_url}', body #>> '{repository,homepage}');
	src text := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'gitlab') || '/' || coalesce(project, 'gitlab');
	repo_ref jsonb := jsonb_build_object('id', project, 'source', src);
	o jsonb;
	status text;
	pred text;
	ts text;
	action text;
	sha text;
	env text;
BEGIN
	CASE kind
	WHEN 'pipeline' THEN
		o := body -> 'object_attributes';
		status := o ->> 'status';
		pred := CASE WHEN status IN ('created', 'waiting_for_resource', 'preparing', 'pending') THEN 'queued'
					 WHEN status = 'running' THEN 'started'
					 WHEN status IN ('success', 'failed', 'canceled', 'skipped') THEN 'finished' END;
		IF pred IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('pipeline status %s', status));
			RETURN;
		END IF;
		ts := CASE pred
			WHEN 'queued' THEN o ->> 'created_at'
			-- no start time in the hook: creation plus the time spent queued
			WHEN 'started' THEN ((o ->> 'created_at')::timestamptz
								 + make_interval(secs => coalesce((o ->> 'queued_duration')::float8, 0)))::text
			ELSE coalesce(o ->> 'finished_at', o ->> 'updated_at', o ->> 'created_at') END;
		RETURN NEXT cdviz.webhook_cdevent('pipelinerun.' || pred, src, ts,
			web_url || '/-/pipelines/' || (o ->> 'id'),
			jsonb_build_object(
				'pipelineName', coalesce(nullif(o ->> 'name', ''), project),
				'uri', web_url || '/-/pipelines/' || (o ->> 'id'),
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.gitlab_outcome(status) END,
				'errors', CASE WHEN pred = 'finished' AND status <> 'success'
							   THEN 'status: ' || coalesce(o ->> 'detailed_status', status) END));

	WHEN 'build' THEN
		status := body ->> 'build_status';
		pred := CASE WHEN status = 'running' THEN 'started'
					 WHEN status IN ('success', 'failed', 'canceled') THEN 'finished' END;
		IF pred IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('job status %s (a task run has no queued event)', status));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('taskrun.' || pred, src,
			CASE pred WHEN 'started' THEN coalesce(body ->> 'build_started_at', body ->> 'build_created_at')
					  ELSE coalesce(body ->> 'build_finished_at', body ->> 'build_started_at') END,
			web_url || '/-/jobs/' || (body ->> 'build_id'),
			jsonb_build_object(
				'taskName', body ->> 'build_name',
				'uri', web_url || '/-/jobs/' || (body ->> 'build_id'),
				'pipelineRun', jsonb_build_object('id', web_url || '/-/pipelines/' || (body ->> 'pipeline_id'),
												  'source', src),
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.gitlab_outcome(status) END,
				'errors', CASE WHEN pred = 'finished' AND status <> 'success'
							   THEN coalesce(body ->> 'build_failure_reason', status) END));

	WHEN 'merge_request' THEN
		o := body -> 'object_attributes';
		action := coalesce(o ->> 'action', CASE o ->> 'state' WHEN 'opened' THEN 'open' WHEN 'merged' THEN 'merge'
															  WHEN 'closed' THEN 'close' END);
		pred := CASE action WHEN 'open' THEN 'created' WHEN 'merge' THEN 'merged' WHEN 'close' THEN 'abandoned'
							WHEN 'approved' THEN 'reviewed' WHEN 'approval' THEN 'reviewed'
							ELSE 'updated' END;
		RETURN NEXT cdviz.webhook_cdevent('change.' || pred, src,
			CASE pred WHEN 'created' THEN o ->> 'created_at'
					  WHEN 'merged' THEN coalesce(o ->> 'merged_at', o ->> 'updated_at')
					  ELSE o ->> 'updated_at' END,
			o ->> 'url',
			jsonb_build_object('repository', repo_ref)
			|| CASE WHEN pred = 'created' THEN jsonb_build_object('description', nullif(o ->> 'title', ''))
					ELSE '{}' END);

	WHEN 'push' THEN
		IF body ->> 'before' ~ '^0+$' THEN
			pred := 'created';
		ELSIF body ->> 'after' ~ '^0+$' THEN
			pred := 'deleted';
		ELSE
			RETURN NEXT jsonb_build_object('ignored', format('push to %s that creates or deletes no branch', body ->> 'ref'));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('branch.' || pred, src,
			CASE WHEN pred = 'created' THEN (SELECT max(c ->> 'timestamp')
											FROM jsonb_array_elements(coalesce(body -> 'commits', '[]')) c) END,
			web_url || '/-/tree/' || regexp_replace(body ->> 'ref', '^refs/heads/', ''),
			jsonb_build_object('repository', repo_ref));

	WHEN 'tag_push' THEN
		IF body ->> 'after' ~ '^0+$' THEN
			RETURN NEXT jsonb_build_object('ignored', format('tag %s deleted', body ->> 'ref'));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src, NULL,
			cdviz.gitlab_purl(project, regexp_replace(body ->> 'ref', '^refs/tags/', '')),
			jsonb_build_object('user', body ->> 'user_username'));

	WHEN 'release' THEN
		IF coalesce(body ->> 'action', 'create') <> 'create' THEN
			RETURN NEXT jsonb_build_object('ignored', format('release action %s', body ->> 'action'));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src,
			coalesce(body ->> 'released_at', body ->> 'created_at'),
			cdviz.gitlab_purl(project, body ->> 'tag'), '{}');

	WHEN 'deployment' THEN
		status := body ->> 'status';
		env := body ->> 'environment';
		ts := coalesce(body ->> 'status_changed_at', body ->> 'deployed_at');
		sha := coalesce(substring(body ->> 'commit_url' FROM '/commit/([0-9a-f]+)$'), body ->> 'short_sha');
		IF status = 'success' THEN
			RETURN NEXT cdviz.webhook_cdevent(
				'service.' || cdviz.webhook_deploy_predicate(env, project, ts::timestamptz), src, ts, project,
				jsonb_build_object('environment', jsonb_build_object('id', env, 'source', src),
								   'artifactId', cdviz.gitlab_purl(project, sha)));
		ELSIF status = 'failed' THEN
			RETURN NEXT cdviz.webhook_cdevent('incident.detected', src, ts,
				web_url || '/-/environments#deployment-' || (body ->> 'deployment_id'),
				jsonb_build_object(
					'description', format('deployment %s of %s to %s failed', body ->> 'deployment_id', project, env),
					'environment', jsonb_build_object('id', env, 'source', src),
					'service', jsonb_build_object('id', project, 'source', src),
					'artifactId', cdviz.gitlab_purl(project, sha)));
		ELSE
			RETURN NEXT jsonb_build_object('ignored', format('deployment status %s', status));
		END IF;

	ELSE
		RETURN NEXT jsonb_build_object('ignored',
			format('GitLab event %s has no CDEvents mapping', coalesce(headers ->> 'x-gitlab-event', kind)));
	END CASE;
END
$$;
COMMENT ON FUNCTION cdviz.transform_gitlab(jsonb, jsonb) IS
'cdviz: GitLab webhook transformer: Pipeline Hook -> pipelinerun queued/started/finished, Job Hook -> taskrun started/finished, Merge Request Hook -> change created/merged/abandoned/reviewed/updated, Push Hook -> branch created/deleted, Tag Push Hook and Release Hook -> artifact.published (pkg:gitlab), Deployment Hook -> service.deployed or upgraded (inventory), failed -> incident.detected. See docs/webhooks.md.';

REVOKE EXECUTE ON FUNCTION cdviz.transform_gitlab(jsonb, jsonb) FROM PUBLIC;
