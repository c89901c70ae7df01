-- Row trigger function of billing_sync_forbid_retirement on billing_sync.feature_flags (revision 0012, issue 13).
-- Deleting (or renaming) the account_data_persistence row is the obvious wrong way to retire the flag: every sync
-- function reads that row, so without it the sync silently stops for everyone. Refused with one line that names the
-- release path. The release revision (0013) retires the flag with this trigger disabled, in the transaction that
-- makes the sync unconditional. Other flags (none today) may be deleted as before; the audit trigger records it.
CREATE OR REPLACE FUNCTION billing_sync.forbid_flag_retirement()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF OLD.name = 'account_data_persistence' AND (TG_OP = 'DELETE' OR NEW.name IS DISTINCT FROM OLD.name) THEN
        RAISE EXCEPTION '% the flag account_data_persistence is refused: the sync reads it, and without it the sync '
                        'would stop for everyone. To switch the sync off: sync-admin flag disable '
                        'account_data_persistence. To retire the flag: sync-admin rollout check, then sync-admin db '
                        'upgrade (the release revision)',
                        CASE TG_OP WHEN 'DELETE' THEN 'Deleting' ELSE 'Renaming' END
            USING ERRCODE = 'object_in_use';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$function$;
