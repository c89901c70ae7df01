-- The schema of the sync machinery: flag tables, audit log and trigger functions.
-- Nothing in it is granted to PUBLIC: applications reach it only through the
-- SECURITY DEFINER functions that the triggers call.
CREATE SCHEMA billing_sync;
