-- 41_dead_letters.sql: a dead letter keeps how its input came.  The HTTP
-- receiver keeps the bytes it received (a whole structured CloudEvent, not
-- its data printed again) and, for a CloudEvents binary-mode request, its
-- Content-Type and ce-* headers, in the new column envelope, which
-- cdviz.replay_rejected() reads.  0.1.0's dead letters have none (NULL:
-- read as plain JSON, as 0.1.0 replayed them).

ALTER TABLE cdviz.rejected_events ADD COLUMN envelope jsonb;
COMMENT ON COLUMN cdviz.rejected_events.envelope IS 'how raw came, when that says how to read it: {"mode": "binary", "headers": {...}} (a CloudEvents binary-mode request: raw is its body, headers its Content-Type and ce-* headers as received), {"mode": "structured"} (raw is one CloudEvent) or {"mode": "batch"} (raw is one CloudEvent of a batch); NULL for plain JSON. cdviz.replay_rejected() reads raw as it says';

COMMENT ON FUNCTION cdviz.replay_rejected(bigint) IS
'cdviz: ingests dead letter id again (after the data or cdviz.validation was fixed) and returns the lake id; marks it replayed. raw is read as its envelope says: a CloudEvent (structured, or a batch element) gives its data; a binary-mode body is judged with the ce-* headers it came with, as the receiver judged it. Still invalid: raises SQLSTATE 22023 with the current problems, which are recorded on the dead letter. A webhook body the receiver refused (origin webhook) is not a CDEvent: raises 42809. Replaying twice is harmless. Example: SELECT cdviz.replay_rejected(42);';
