-- GitHub webhooks -> CDEvents 0.5.1.  The event name comes in the
-- X-GitHub-Event header, the rest in the body; see docs/webhooks.md for the
-- mapping table.  Ids are URLs where GitHub has one, so that a dashboard
-- row links back to GitHub.

CREATE FUNCTION cdviz.github_outcome(conclusion text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE conclusion
		WHEN 'success' THEN 'success'
		WHEN 'neutral' THEN 'success'
		WHEN 'failure' THEN 'failure'
		WHEN 'cancelled' THEN 'cancel'
		WHEN 'skipped' THEN 'cancel'
		WHEN 'stale' THEN 'cancel'
		WHEN 'timed_out' THEN 'error'
		WHEN 'startup_failure' THEN 'error'
		WHEN 'action_required' THEN 'error'
		ELSE CASE WHEN conclusion IS NULL THEN NULL ELSE 'error' END
	END
$$;
COMMENT ON FUNCTION cdviz.github_outcome(text) IS
'cdviz: CDEvents outcome of a GitHub conclusion: success|neutral -> success, failure -> failure, cancelled|skipped|stale -> cancel, timed_out|startup_failure|action_required (and anything new) -> error';

-- Package URL of a GitHub Packages version, per ecosystem.
CREATE FUNCTION cdviz.github_package_purl(pkg jsonb, owner text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb := pkg -> 'package_version';
	kind text := lower(coalesce(pkg ->> 'package_type', pkg ->> 'ecosystem', ''));
	name text := pkg ->> 'name';
	version text := coalesce(v ->> 'version', v ->> 'name');
	image text;
	digest text;
BEGIN
	-- container images: GitHub's examples call them docker, container or
	-- even npm with container metadata; the metadata is what tells
	IF jsonb_typeof(v -> 'container_metadata') = 'object' OR kind IN ('container', 'docker') THEN
		digest := coalesce(nullif(v #>> '{container_metadata,tag,digest}', ''),
						   nullif(v #>> '{container_metadata,manifest,digest}', ''),
						   CASE WHEN version LIKE 'sha256:%' THEN version END);
		image := coalesce(nullif(regexp_replace(coalesce(v ->> 'package_url', ''), ':[^/:]*$', ''), ''),
						  'ghcr.io/' || owner || '/' || name);
		RETURN cdviz.webhook_oci_purl(image
									  || CASE WHEN nullif(v #>> '{container_metadata,tag,name}', '') IS NOT NULL
											  THEN ':' || (v #>> '{container_metadata,tag,name}') ELSE '' END,
									  digest);
	END IF;
	RETURN CASE kind
		WHEN 'npm' THEN 'pkg:npm/%40' || lower(owner) || '/' || lower(name) || '@' || version
		WHEN 'maven' THEN 'pkg:maven/' || regexp_replace(name, '\.[^.]*$', '') || '/'
						  || regexp_replace(name, '^.*\.', '') || '@' || version
		WHEN 'nuget' THEN 'pkg:nuget/' || name || '@' || version
		WHEN 'rubygems' THEN 'pkg:gem/' || name || '@' || version
		ELSE 'pkg:generic/' || name || '@' || version
	END;
END
$$;
COMMENT ON FUNCTION cdviz.github_package_purl(jsonb, text) IS
'cdviz: package URL of the package (and package_version) object of a GitHub package / registry_package event: pkg:oci/<name>@<digest>?repository_url=ghcr.io/... for containers, pkg:npm/%40<owner>/<name>@<v>, pkg:maven/<group>/<artifact>@<v>, pkg:nuget/<name>@<v>, pkg:gem/<name>@<v>, else pkg:generic';

CREATE FUNCTION cdviz.transform_github(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	event text := headers ->> 'x-github-event';
	action text := body ->> 'action';
	repo text := body #>> '{repository,full_name}';
	repo_url text := body #>> '{repository,html_url}';
	src text := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'github') || '/'
				|| coalesce(repo, body #>> '{organization,login}', body #>> '{sender,login}', 'github');
	repo_ref jsonb := jsonb_build_object('id', repo, 'source', src);
	o jsonb;
	run_id text;
	pr jsonb;
	ref text;
	kind text;
	ts text;
	env text;
	svc text;
	artifact text;
	image text;
BEGIN
	IF event IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', 'no X-GitHub-Event header');
		RETURN;
	END IF;

	CASE event
	WHEN 'ping' THEN
		RETURN NEXT jsonb_build_object('ignored', 'ping');

	WHEN 'workflow_run' THEN
		o := body -> 'workflow_run';
		run_id := repo_url || '/actions/runs/' || (o ->> 'id') || '/attempts/' || coalesce(o ->> 'run_attempt', '1');
		kind := CASE action WHEN 'requested' THEN 'queued' WHEN 'in_progress' THEN 'started'
							WHEN 'completed' THEN 'finished' END;
		IF kind IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('workflow_run action %s', action));
			RETURN;
		END IF;
		ts := CASE kind
			WHEN 'queued' THEN CASE WHEN coalesce((o ->> 'run_attempt')::int, 1) > 1
									THEN o ->> 'run_started_at' ELSE o ->> 'created_at' END
			WHEN 'started' THEN coalesce(o ->> 'run_started_at', o ->> 'updated_at')
			ELSE o ->> 'updated_at' END;
		RETURN NEXT cdviz.webhook_cdevent('pipelinerun.' || kind, src, ts, run_id,
			jsonb_build_object(
				'pipelineName', coalesce(nullif(o ->> 'name', ''), nullif(body #>> '{workflow,name}', ''), o ->> 'path'),
				'uri', o ->> 'html_url',
				'outcome', CASE WHEN kind = 'finished' THEN cdviz.github_outcome(o ->> 'conclusion') END,
				'errors', CASE WHEN kind = 'finished' AND cdviz.github_outcome(o ->> 'conclusion') <> 'success'
							   THEN 'conclusion: ' || (o ->> 'conclusion') END));

	WHEN 'workflow_job' THEN
		o := body -> 'workflow_job';
		kind := CASE action WHEN 'in_progress' THEN 'started' WHEN 'completed' THEN 'finished' END;
		IF kind IS NULL THEN
			RETURN NEXT jsonb_build_object('ignored', format('workflow_job action %s (a task run has no queued event)', action));
			RETURN;
		END IF;
		run_id := repo_url || '/actions/runs/' || (o ->> 'run_id') || '/attempts/' || coalesce(o ->> 'run_attempt', '1');
		RETURN NEXT cdviz.webhook_cdevent('taskrun.' || kind, src,
			CASE kind WHEN 'started' THEN o ->> 'started_at' ELSE coalesce(o ->> 'completed_at', o ->> 'started_at') END,
			repo_url || '/actions/runs/' || (o ->> 'run_id') || '/job/' || (o ->> 'id'),
			jsonb_build_object(
				'taskName', o ->> 'name',
				'uri', o ->> 'html_url',
				'pipelineRun', jsonb_build_object('id', run_id, 'source', src),
				'outcome', CASE WHEN kind = 'finished' THEN cdviz.github_outcome(o ->> 'conclusion') END,
				'errors', CASE WHEN kind = 'finished' AND cdviz.github_outcome(o ->> 'conclusion') <> 'success'
							   THEN 'conclusion: ' || (o ->> 'conclusion') END));

	WHEN 'pull_request' THEN
		pr := body -> 'pull_request';
		IF action = 'opened' THEN
			RETURN NEXT cdviz.webhook_cdevent('change.created', src, pr ->> 'created_at', pr ->> 'html_url',
				jsonb_build_object('description', nullif(pr ->> 'title', ''), 'repository', repo_ref));
		ELSIF action = 'closed' AND coalesce((pr ->> 'merged')::boolean, false) THEN
			RETURN NEXT cdviz.webhook_cdevent('change.merged', src, coalesce(pr ->> 'merged_at', pr ->> 'closed_at'),
				pr ->> 'html_url', jsonb_build_object('repository', repo_ref));
		ELSIF action = 'closed' THEN
			RETURN NEXT cdviz.webhook_cdevent('change.abandoned', src, coalesce(pr ->> 'closed_at', pr ->> 'updated_at'),
				pr ->> 'html_url', jsonb_build_object('repository', repo_ref));
		ELSE
			RETURN NEXT cdviz.webhook_cdevent('change.updated', src, pr ->> 'updated_at', pr ->> 'html_url',
				jsonb_build_object('repository', repo_ref));
		END IF;

	WHEN 'pull_request_review' THEN
		IF action <> 'submitted' THEN
			RETURN NEXT jsonb_build_object('ignored', format('pull_request_review action %s', action));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('change.reviewed', src, body #>> '{review,submitted_at}',
			body #>> '{pull_request,html_url}', jsonb_build_object('repository', repo_ref));

	WHEN 'create', 'delete' THEN
		IF body ->> 'ref_type' <> 'branch' THEN
			RETURN NEXT jsonb_build_object('ignored', format('%s of a %s (releases publish tags)', event, body ->> 'ref_type'));
			RETURN;
		END IF;
		-- GitHub gives no time for these: the delivery's reception time is used
		RETURN NEXT cdviz.webhook_cdevent(CASE event WHEN 'create' THEN 'branch.created' ELSE 'branch.deleted' END,
			src, NULL, repo_url || '/tree/' || (body ->> 'ref'), jsonb_build_object('repository', repo_ref));

	WHEN 'push' THEN
		ref := body ->> 'ref';
		IF ref NOT LIKE 'refs/heads/%' OR NOT (coalesce((body ->> 'created')::boolean, false)
											   OR coalesce((body ->> 'deleted')::boolean, false)) THEN
			RETURN NEXT jsonb_build_object('ignored', format('push to %s that creates or deletes no branch', ref));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent(
			CASE WHEN (body ->> 'deleted')::boolean THEN 'branch.deleted' ELSE 'branch.created' END, src,
			CASE WHEN (body ->> 'deleted')::boolean THEN NULL
				 ELSE coalesce(body #>> '{head_commit,timestamp}', body #>> '{repository,pushed_at}') END,
			repo_url || '/tree/' || substr(ref, 12), jsonb_build_object('repository', repo_ref));

	WHEN 'release' THEN
		IF action <> 'published' THEN
			RETURN NEXT jsonb_build_object('ignored', format('release action %s (only published releases are artifacts)', action));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src, body #>> '{release,published_at}',
			'pkg:github/' || lower(repo) || '@' || (body #>> '{release,tag_name}'),
			jsonb_build_object('user', body #>> '{release,author,login}'));

	WHEN 'package', 'registry_package' THEN
		o := body -> (CASE event WHEN 'package' THEN 'package' ELSE 'registry_package' END);
		IF action <> 'published' THEN
			RETURN NEXT jsonb_build_object('ignored', format('%s action %s', event, action));
			RETURN;
		END IF;
		-- GitHub's container versions may carry year 1 as their times
		ts := coalesce(CASE WHEN o #>> '{package_version,updated_at}' > '1970' THEN o #>> '{package_version,updated_at}' END,
					   CASE WHEN o #>> '{package_version,created_at}' > '1970' THEN o #>> '{package_version,created_at}' END,
					   o ->> 'updated_at');
		RETURN NEXT cdviz.webhook_cdevent('artifact.published', src, ts,
			cdviz.github_package_purl(o, coalesce(o #>> '{owner,login}', body #>> '{repository,owner,login}',
												  split_part(o ->> 'namespace', '/', 1))),
			jsonb_build_object('user', body #>> '{sender,login}'));

	WHEN 'deployment_status' THEN
		o := body -> 'deployment_status';
		IF o ->> 'state' <> 'success' THEN
			RETURN NEXT jsonb_build_object('ignored', format('deployment_status %s (only success deploys)', o ->> 'state'));
			RETURN;
		END IF;
		env := coalesce(o ->> 'environment', body #>> '{deployment,environment}');
		svc := coalesce(nullif(body #>> '{deployment,payload,service}', ''), repo);
		image := nullif(body #>> '{deployment,payload,image}', '');
		artifact := coalesce(cdviz.webhook_oci_purl(image),
							 'pkg:github/' || lower(repo) || '@' || (body #>> '{deployment,sha}'));
		ts := coalesce(o ->> 'updated_at', o ->> 'created_at');
		RETURN NEXT cdviz.webhook_cdevent(
			'service.' || cdviz.webhook_deploy_predicate(env, svc, ts::timestamptz), src, ts, svc,
			jsonb_build_object('environment', jsonb_build_object('id', env, 'source', src),
							   'artifactId', artifact));

	WHEN 'check_run', 'check_suite' THEN
		o := body -> event;
		IF action <> 'completed' THEN
			RETURN NEXT jsonb_build_object('ignored', format('%s action %s', event, action));
			RETURN;
		END IF;
		RETURN NEXT cdviz.webhook_cdevent('testsuiterun.finished', src,
			coalesce(o ->> 'completed_at', o ->> 'updated_at'),
			coalesce(o ->> 'html_url', repo_url || '/commit/' || (o ->> 'head_sha') || '/checks?check_suite_id=' || (o ->> 'id')),
			jsonb_build_object(
				'outcome', coalesce(cdviz.github_outcome(o ->> 'conclusion'), 'error'),
				'reason', CASE WHEN cdviz.github_outcome(o ->> 'conclusion') <> 'success'
							   THEN 'conclusion: ' || (o ->> 'conclusion') END,
				'environment', jsonb_build_object('id', 'github/' || coalesce(o #>> '{app,slug}', 'checks'), 'source', src),
				'testSuite', jsonb_build_object(
					'id', coalesce(o ->> 'name', o #>> '{app,slug}', 'check_suite') || '@' || repo,
					'name', coalesce(o ->> 'name', o #>> '{app,name}', 'check suite'),
					'uri', o ->> 'html_url')));

	WHEN 'issues' THEN
		o := body -> 'issue';
		kind := CASE action WHEN 'opened' THEN 'created' WHEN 'closed' THEN 'closed' ELSE 'updated' END;
		RETURN NEXT cdviz.webhook_cdevent('ticket.' || kind, src,
			CASE kind WHEN 'created' THEN o ->> 'created_at'
					  WHEN 'closed' THEN coalesce(o ->> 'closed_at', o ->> 'updated_at')
					  ELSE o ->> 'updated_at' END,
			o ->> 'html_url',
			jsonb_build_object(
				'summary', o ->> 'title',
				'creator', o #>> '{user,login}',
				'uri', o ->> 'html_url',
				'assignees', (SELECT jsonb_agg(a ->> 'login') FROM jsonb_array_elements(coalesce(o -> 'assignees', '[]')) a),
				'labels', (SELECT jsonb_agg(l ->> 'name') FROM jsonb_array_elements(coalesce(o -> 'labels', '[]')) l),
				'milestone', o #>> '{milestone,title}',
				'group', repo,
				'resolution', CASE WHEN kind = 'closed' THEN
					CASE o ->> 'state_reason' WHEN 'not_planned' THEN 'withdrawn' WHEN 'duplicate' THEN 'duplicate'
											  ELSE 'completed' END END,
				'updatedBy', CASE WHEN kind <> 'created' THEN body #>> '{sender,login}' END));

	ELSE
		RETURN NEXT jsonb_build_object('ignored', format('GitHub event %s has no CDEvents mapping', event));
	END CASE;
END
$$;
COMMENT ON FUNCTION cdviz.transform_github(jsonb, jsonb) IS
'cdviz: GitHub webhook transformer: workflow_run -> pipelinerun queued/started/finished, workflow_job -> taskrun started/finished, pull_request -> change created/merged/abandoned/updated, pull_request_review -> change.reviewed, create/delete/push of a branch -> branch created/deleted, release published -> artifact.published (pkg:github), package/registry_package published -> artifact.published (pkg:oci, npm, maven, nuget, gem), deployment_status success -> service.deployed or upgraded (inventory), check_run/check_suite completed -> testsuiterun.finished, issues -> ticket created/closed/updated; ping and the rest are ignored. See docs/webhooks.md.';

REVOKE EXECUTE ON FUNCTION cdviz.transform_github(jsonb, jsonb), cdviz.github_package_purl(jsonb, text),
	cdviz.github_outcome(text)
FROM PUBLIC;
