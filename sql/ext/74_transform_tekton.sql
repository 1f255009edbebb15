-- Tekton CloudEvents -> CDEvents 0.5.1.  Tekton Pipelines sends
-- CloudEvents in binary mode: the type in the ce-type header
-- (dev.tekton.event.pipelinerun.started.v1, ...), the run in the body
-- ({"pipelineRun": {...}} or {"taskRun": {...}}).  The delivery key comes
-- from ce-source and ce-id.

CREATE FUNCTION cdviz.tekton_outcome(condition jsonb)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN condition ->> 'status' = 'True' THEN 'success'
		WHEN condition ->> 'reason' IN ('Cancelled', 'PipelineRunCancelled', 'TaskRunCancelled',
										'StoppedRunFinally', 'CancelledRunFinally') THEN 'cancel'
		WHEN condition ->> 'reason' IN ('PipelineRunTimeout', 'TaskRunTimeout', 'CouldntGetPipeline',
										'CouldntGetTask', 'PipelineValidationFailed', 'TaskRunValidationFailed',
										'TaskRunImagePullFailed', 'CreateContainerConfigError') THEN 'error'
		ELSE 'failure'
	END
$$;
COMMENT ON FUNCTION cdviz.tekton_outcome(jsonb) IS
'cdviz: CDEvents outcome of a Tekton Succeeded condition: True -> success; reason *Cancelled / StoppedRunFinally -> cancel; timeouts, missing or invalid definitions, image pull failures -> error; other failures -> failure';

CREATE FUNCTION cdviz.transform_tekton(headers jsonb, body jsonb)
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ce_type text := coalesce(headers ->> 'ce-type', body ->> 'type');
	parts text[] := regexp_match(ce_type, '^dev\.tekton\.event\.(pipelinerun|taskrun)\.([a-z]+)\.v1$');
	subject text := parts[1];
	state text := parts[2];
	run jsonb;
	ns text;
	src text;
	cond jsonb;
	pred text;
	ts text;
	pipeline_run text;
BEGIN
	IF parts IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', format('CloudEvent type %s is not a Tekton run event', coalesce(ce_type, '(none)')));
		RETURN;
	END IF;
	run := coalesce(body -> (CASE subject WHEN 'pipelinerun' THEN 'pipelineRun' ELSE 'taskRun' END),
					body #> ARRAY['data', CASE subject WHEN 'pipelinerun' THEN 'pipelineRun' ELSE 'taskRun' END]);
	IF jsonb_typeof(run) <> 'object' THEN
		RETURN NEXT jsonb_build_object('ignored', format('%s without a run object in the body', ce_type));
		RETURN;
	END IF;
	ns := coalesce(run #>> '{metadata,namespace}', 'default');
	src := '/webhooks/' || coalesce(headers ->> 'x-cdviz-route', 'tekton') || '/' || ns;
	SELECT c INTO cond FROM jsonb_array_elements(coalesce(run #> '{status,conditions}', '[]')) c
	WHERE c ->> 'type' = 'Succeeded' LIMIT 1;

	pred := CASE state
		WHEN 'started' THEN 'started'
		WHEN 'successful' THEN 'finished'
		WHEN 'failed' THEN 'finished'
		WHEN 'unknown' THEN CASE WHEN subject = 'pipelinerun' AND cond ->> 'reason' IN ('Pending', 'PipelineRunPending')
								 THEN 'queued' END
		END;
	IF pred IS NULL THEN
		RETURN NEXT jsonb_build_object('ignored', format('%s (%s)', ce_type, coalesce(cond ->> 'reason', 'no reason')));
		RETURN;
	END IF;
	ts := CASE pred
		WHEN 'queued' THEN run #>> '{metadata,creationTimestamp}'
		WHEN 'started' THEN coalesce(run #>> '{status,startTime}', run #>> '{metadata,creationTimestamp}')
		ELSE coalesce(run #>> '{status,completionTime}', cond ->> 'lastTransitionTime') END;

	IF subject = 'pipelinerun' THEN
		RETURN NEXT cdviz.webhook_cdevent('pipelinerun.' || pred, src, ts, ns || '/' || (run #>> '{metadata,name}'),
			jsonb_build_object(
				'pipelineName', coalesce(run #>> '{metadata,labels,tekton.dev/pipeline}',
										 run #>> '{spec,pipelineRef,name}', run #>> '{metadata,name}'),
				-- pipelinerun.started requires a URI: the run's own link
				-- (annotation cdviz.dev/uri, e.g. its Tekton Dashboard
				-- page), else a URN naming it
				'uri', coalesce(run #>> '{metadata,annotations,cdviz.dev/uri}',
								'urn:tekton:' || ns || ':pipelinerun:' || (run #>> '{metadata,name}')),
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.tekton_outcome(cond) END,
				'errors', CASE WHEN pred = 'finished' AND cond ->> 'status' <> 'True'
							   THEN concat_ws(': ', cond ->> 'reason', cond ->> 'message') END));
	ELSE
		IF pred = 'queued' THEN
			RETURN;
		END IF;
		pipeline_run := run #>> '{metadata,labels,tekton.dev/pipelineRun}';
		RETURN NEXT cdviz.webhook_cdevent('taskrun.' || pred, src, ts, ns || '/' || (run #>> '{metadata,name}'),
			jsonb_build_object(
				'taskName', coalesce(run #>> '{metadata,labels,tekton.dev/pipelineTask}',
									 run #>> '{metadata,labels,tekton.dev/task}',
									 run #>> '{spec,taskRef,name}', run #>> '{metadata,name}'),
				'uri', coalesce(run #>> '{metadata,annotations,cdviz.dev/uri}',
								'urn:tekton:' || ns || ':taskrun:' || (run #>> '{metadata,name}')),
				'pipelineRun', CASE WHEN pipeline_run IS NOT NULL
									THEN jsonb_build_object('id', ns || '/' || pipeline_run, 'source', src) END,
				'outcome', CASE WHEN pred = 'finished' THEN cdviz.tekton_outcome(cond) END,
				'errors', CASE WHEN pred = 'finished' AND cond ->> 'status' <> 'True'
							   THEN concat_ws(': ', cond ->> 'reason', cond ->> 'message') END));
	END IF;
END
$$;
COMMENT ON FUNCTION cdviz.transform_tekton(jsonb, jsonb) IS
'cdviz: Tekton CloudEvents transformer (binary mode, ce-type dev.tekton.event.<pipelinerun|taskrun>.<state>.v1): started -> started, successful / failed -> finished with the outcome of the Succeeded condition, a pending pipeline run (unknown, reason Pending) -> pipelinerun.queued; running and other unknown states are ignored. Run ids are <namespace>/<name>, their uri the annotation cdviz.dev/uri or urn:tekton:<namespace>:<kind>:<name>; a task run names its pipeline run (label tekton.dev/pipelineRun).';

REVOKE EXECUTE ON FUNCTION cdviz.transform_tekton(jsonb, jsonb) FROM PUBLIC;
