-- billing_sync.repair_queued(max_count, after_id): one pass of the repair service (`sync-admin heal`, revision
-- 0007, issue 11). Takes the customers of the oldest MAX_COUNT committed rows of billing_sync.sync_repairs
-- with an id above AFTER_ID (the service passes the last_id of its previous pass while customers are left,
-- so that customers held by a long transaction at the head of the queue do not starve the others), and
-- repairs them with billing_sync.sync_customers, which deletes their rows, or leaves them queued when a live
-- transaction still holds the customer or the claim on its new account (the next pass tries again).
-- Returns what the pass did, the highest queue row id it took (last_id; NULL when it took none) and how many
-- rows are still queued. Run it in its own READ COMMITTED transaction:
-- only committed rows are seen, so a queued repair is acted on after the write that queued it has ended.
-- Safe beside live writes, idempotent, never waits for another transaction (see sync_customers).
CREATE OR REPLACE FUNCTION billing_sync.repair_queued(
    max_count integer,
    after_id bigint DEFAULT 0,
    OUT customers integer,
    OUT synced integer,
    OUT accounts_created integer,
    OUT memberships_added integer,
    OUT memberships_removed integer,
    OUT left_ids bigint[],
    OUT last_id bigint,
    OUT still_queued bigint
)
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    ids bigint[];
BEGIN
    IF max_count IS NULL OR max_count < 1 THEN
        RAISE EXCEPTION 'max_count must be at least 1, not %', max_count USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(array_agg(DISTINCT q.customer_id ORDER BY q.customer_id), '{}'), max(q.id)
    INTO ids, last_id
    FROM (
        SELECT s.id, s.customer_id FROM billing_sync.sync_repairs s
        WHERE s.id > coalesce(repair_queued.after_id, 0)
        ORDER BY s.id
        LIMIT repair_queued.max_count
    ) q;
    customers := pg_catalog.cardinality(ids);
    IF customers = 0 THEN
        synced := 0;
        accounts_created := 0;
        memberships_added := 0;
        memberships_removed := 0;
        left_ids := '{}';
    ELSE
        SELECT o.synced, o.accounts_created, o.memberships_added, o.memberships_removed, o.left_ids
        INTO synced, accounts_created, memberships_added, memberships_removed, left_ids
        FROM billing_sync.sync_customers(ids) o;
    END IF;
    SELECT count(*) INTO still_queued FROM billing_sync.sync_repairs;
END;
$function$;
