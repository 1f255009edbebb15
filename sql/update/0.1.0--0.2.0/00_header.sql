-- cdviz update from 0.1.0 to 0.2.0, assembled from sql/update/0.1.0--0.2.0/
-- in name order.  An install updated by it equals a fresh install of 0.2.0
-- (TAP test 060_upgrade.pl compares their schema dumps).
\echo Use "ALTER EXTENSION cdviz UPDATE TO '0.2.0'" to load this file. \quit
