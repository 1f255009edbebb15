
-- pg_dump keeps every table with data or progress and the sequences behind
-- them (0.1.0 left these out: a restore lost the dead letters and the
-- pollers' progress, and restarted the lake's ids at 1).
SELECT pg_catalog.pg_extension_config_dump('cdviz.cdevents_lake_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.fs_files', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.s3_objects', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.source_polls', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.sinks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.lake_batches_batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdviz.rejected_deliveries_id_seq', '');
